// Signals, queries and updates, defined once for Temporal and imported by workflows and the client
// alike. Their names and the shapes they carry are the model's (model/messages.ts).
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import {
  MESSAGE,
  type PartitionProgress,
  type BackfillProgress,
  type DiscrepancyBatch,
  type SyncFailure,
  type ReconciliationStatus,
  type VerificationReport,
  type ApproveResult,
  type RollbackResult,
  type MigrationStatus,
  type ThrottleRequest,
  type ThrottleResult,
  type TuneRequest,
  type PartitionReport,
  type BackfillReport,
} from '../model/messages';

/** Stop starting new chunks (chunks in flight finish); takes effect at once. */
export const pauseSignal = defineSignal(MESSAGE.pause);

export const resumeSignal = defineSignal(MESSAGE.resume);

/** The operator's row rate limit for a table's backfill; null lifts it (configured limits remain). */
export const throttleSignal = defineSignal<[{ maxRowsPerSecond: number | null }]>(MESSAGE.throttle);

/** The operator's latency target (null: the brake off) and nice ratio, for a backfill and its partitions. */
export const tuneSignal = defineSignal<[TuneRequest]>(MESSAGE.tune);

export const backfillProgressQuery = defineQuery<BackfillProgress>(MESSAGE.backfillProgress);

export const partitionProgressQuery = defineQuery<PartitionProgress>(MESSAGE.partitionProgress);

/** A partition's rows so far, to its table workflow, at most every PROGRESS_REPORT_MS (bounded). */
export const partitionCopiedSignal = defineSignal<[PartitionReport]>(MESSAGE.partitionCopied);

/**
 * A table's backfill tells its migration how far it got, at most every few seconds, for the
 * migration's current details in the Web UI (rows, rows/s, ETA). Handled without a command.
 */
export const backfillCopiedSignal = defineSignal<[BackfillReport]>(MESSAGE.backfillCopied);

export const discrepancySignal = defineSignal<[DiscrepancyBatch]>(MESSAGE.discrepancy);

/** Finish once the change log and the queued discrepancies are empty. */
export const drainAndStopSignal = defineSignal(MESSAGE.drainAndStop);

/**
 * Finish after the batch in hand, whatever is left: the write switch drains the change log itself
 * under the fence (under steady writes the log is never empty, so drainAndStop would never end).
 * Queued discrepancy keys are dropped; capture logged every one of them.
 */
export const stopSignal = defineSignal(MESSAGE.stop);

/**
 * A backfill partition tells its migration that its copy failed for a cause only an operator can
 * mend (a schema change, the wrong servers, a constraint): the migration holds; the partition waits
 * for `resume` and then tries the failed chunks again, keeping everything it copied.
 */
export const backfillTroubleSignal = defineSignal<
  [{ workflowId: string; table: string; message: string; code: string | null }]
>(MESSAGE.backfillTrouble);

/** Reconciliation tells its migration which failures hold it; an empty list says they cleared. */
export const syncTroubleSignal = defineSignal<[{ failing: SyncFailure[] }]>(MESSAGE.syncTrouble);

/** Try the failing tables again now (the operator resumed the migration). */
export const retrySyncSignal = defineSignal(MESSAGE.retrySync);

export const reconciliationStatusQuery = defineQuery<ReconciliationStatus>(MESSAGE.reconciliationStatus);

export const verificationReportQuery = defineQuery<VerificationReport>(MESSAGE.verificationReport);

// ---- The migration (workflows/migration.ts): pauseSignal and resumeSignal above, and these. ----

/** Roll back one step, now; `rollbackUpdate` does the same with a target and an answer. */
export const rollbackSignal = defineSignal(MESSAGE.rollback);

/** Releases what the migration holds for an operator: an approval point or a failed gate. */
export const approveUpdate = defineUpdate<ApproveResult, [{ by?: string }]>(MESSAGE.approve);

/** Rolls back to an earlier step (`off`, `dual_write`, `shadow`, `live`, `live:25`, `switched`). */
export const rollbackUpdate = defineUpdate<RollbackResult, [{ to: string; by?: string }]>(MESSAGE.rollbackTo);

/** Ends the migration: everyone back on old, capture and guards removed; new's rows stay. */
export const abortUpdate = defineUpdate<{ abortedAt: string }, [{ by?: string }]>(MESSAGE.abort);

export const migrationStatusQuery = defineQuery<MigrationStatus>(MESSAGE.migrationStatus);

/** Sets the row limit of every table's backfill, running or still to come; null lifts it. */
export const throttleUpdate = defineUpdate<ThrottleResult, [ThrottleRequest]>(MESSAGE.setThrottle);
