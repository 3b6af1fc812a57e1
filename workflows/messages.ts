// Signals, queries and updates, defined once and imported by workflows and the client alike.
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { KeyRange } from '../activities/key-ranges';
import type { TableRef } from '../activities/inspector';
import type { QueryBenchmarkResult } from '../activities/query-benchmark';
import type { VerificationCounts } from '../activities/verification-counts';
import type { Stage } from '../router/stage-store';
import type { WriteSwitchResult } from './write-switch';

/** Stop starting new chunks (chunks in flight finish); takes effect at once. */
export const pauseSignal = defineSignal('pause');
export const resumeSignal = defineSignal('resume');
/** The operator's row rate limit for a table's backfill; null lifts it (configured limits remain). */
export const throttleSignal = defineSignal<[{ maxRowsPerSecond: number | null }]>('throttle');

export interface PartitionProgress {
  workflowId: string;
  pass: 'hot' | 'main';
  range: KeyRange;
  rowsCopied: number;
  rowsRead: number;
  chunksDone: number;
  /** Activities copying chunks right now. */
  chunksInFlight: number;
  /** Chunks handed to activities so far (done or in flight). */
  chunksDispatched: number;
  /** chunksDispatched when the latest pause arrived: once paused, no chunk is handed out after it. */
  chunksDispatchedWhenPaused: number | null;
  /** Workflow time (ms since epoch) the partition started; carried across continue-as-new. */
  startedAt: number;
  /** Workflow time of the latest progress. */
  updatedAt: number;
  paused: boolean;
  /** Why the partition is waiting now (throttle, pause, or a failure it holds for), or null. */
  waitingFor: string | null;
  /** A failure retrying could not heal, held until the operator resumes; null when none. */
  failure: string | null;
  /** How often a throttle made it wait, by reason kind, over its whole life. */
  throttled: Record<string, number>;
  done: boolean;
  /** Workflow runs so far (1 + times it continued as new). */
  runs: number;
}

export interface BackfillProgress {
  table: string;
  phase: 'preparing' | 'hot-rows' | 'copying' | 'done';
  estimatedRows: number;
  paused: boolean;
  maxRowsPerSecond: number | null;
  /** Every partition workflow of this backfill, hot-rows pass first; query them for live counts. */
  partitions: Array<{ workflowId: string; pass: 'hot' | 'main'; range: KeyRange; done: boolean }>;
  /** Totals of the partitions that finished. */
  finished: { rowsCopied: number; chunksDone: number };
}

export const backfillProgressQuery = defineQuery<BackfillProgress>('backfillProgress');
export const partitionProgressQuery = defineQuery<PartitionProgress>('partitionProgress');

/** Keys that differ between the sides (a failed mirror write, a verifier finding): sync them. */
export interface DiscrepancyBatch {
  table: TableRef;
  keys: string[][];
}
export const discrepancySignal = defineSignal<[DiscrepancyBatch]>('discrepancy');
/** Finish once the change log and the queued discrepancies are empty. */
export const drainAndStopSignal = defineSignal('drainAndStop');
/**
 * Finish after the batch in hand, whatever is left: the write switch drains the change log itself
 * under the fence (under steady writes the log is never empty, so drainAndStop would never end).
 * Queued discrepancy keys are dropped; capture logged every one of them.
 */
export const stopSignal = defineSignal('stop');

/** A table whose changes reconciliation could not carry over, and keeps trying. */
export interface SyncFailure {
  /** schema.table, or "(every table)" when the whole batch failed. */
  table: string;
  message: string;
  /** SQLSTATE or failure type (SchemaChanged, WrongServers, SyncFailed, ...). */
  code: string | null;
  /** Workflow time of the first failure in a row. */
  since: number;
  /** Failed tries in a row. */
  attempts: number;
  /** Workflow time of the next try. */
  nextTryAt: number;
  /** True once the migration holds for it (after a few tries, or at once for a failure that needs an operator). */
  holds: boolean;
}

/**
 * A backfill partition tells its migration that its copy failed for a cause only an operator can
 * mend (a schema change, the wrong servers, a constraint): the migration holds; the partition waits
 * for `resume` and then tries the failed chunks again, keeping everything it copied.
 */
export const backfillTroubleSignal =
  defineSignal<[{ workflowId: string; table: string; message: string; code: string | null }]>(
    'backfillTrouble',
  );

/** Reconciliation tells its migration which failures hold it; an empty list says they cleared. */
export const syncTroubleSignal = defineSignal<[{ failing: SyncFailure[] }]>('syncTrouble');
/** Try the failing tables again now (the operator resumed the migration). */
export const retrySyncSignal = defineSignal('retrySync');

export interface ReconciliationStatus {
  /** Change log entries waiting (counted up to a million) plus queued discrepancy keys. */
  backlog: number;
  changeLogBacklog: number;
  queuedDiscrepancyKeys: number;
  /** Age in seconds of the oldest change not yet applied, as of the last drain. */
  lagSeconds: number;
  entriesApplied: number;
  keysSynced: number;
  rowsUpserted: number;
  rowsDeleted: number;
  lastDrainAt: number | null;
  /** Asked to finish: once drained (drainAndStop), or after the batch in hand (stop). */
  stopping: false | 'when-drained' | 'now';
  /** Tables whose changes keep failing to sync; their entries stay in the log and count in the backlog. */
  failing: SyncFailure[];
  /** Workflow runs so far (1 + times it continued as new). */
  runs: number;
}
export const reconciliationStatusQuery = defineQuery<ReconciliationStatus>('reconciliationStatus');

/** What verification found in one table (verificationWorkflow). */
export interface VerificationReport extends VerificationCounts {
  table: string;
  phase: 'planning' | 'verifying' | 'done';
  startedAt: number;
  finishedAt: number | null;
  rowsPerSecond: number | null;
  /** Workflow runs so far (1 + times it continued as new). */
  runs: number;
}
export const verificationReportQuery = defineQuery<VerificationReport>('verificationReport');

// ---- The migration (workflows/migration.ts): pauseSignal and resumeSignal above, and these. ----

/** Roll back one step, now; `rollbackUpdate` does the same with a target and an answer. */
export const rollbackSignal = defineSignal('rollback');

export interface ApproveResult {
  /** What the approval released, e.g. "entering switched". */
  released: string;
}
/** Releases what the migration holds for an operator: an approval point or a failed gate. */
export const approveUpdate = defineUpdate<ApproveResult, [{ by?: string }]>('approve');

export interface RollbackResult {
  from: string;
  to: string;
}
/** Rolls back to an earlier step (`off`, `dual_write`, `shadow`, `live`, `live:25`, `switched`). */
export const rollbackUpdate = defineUpdate<RollbackResult, [{ to: string; by?: string }]>('rollbackTo');

/** Ends the migration: everyone back on old, capture and guards removed; new's rows stay. */
export const abortUpdate = defineUpdate<{ abortedAt: string }, [{ by?: string }]>('abort');

export type MigrationPhase =
  | 'preparing'
  | 'backfilling'
  | 'completing-tables'
  | 'verifying'
  | 'benchmarking'
  | 'gating'
  | 'held'
  | 'paused'
  | 'switching'
  | 'rolling-back'
  | 'soaking'
  | 'retiring'
  | 'retired'
  | 'aborting'
  | 'aborted';

export interface GateCheck {
  name: string;
  /** The measured figure, or null when there was nothing to measure. */
  value: number | null;
  limit: number | null;
  ok: boolean;
  detail: string;
}

export interface GateReport {
  step: string;
  at: number;
  /** The soak window the router figures cover, in ms. */
  windowMs: number;
  routers: number;
  passed: boolean;
  checks: GateCheck[];
}

/**
 * What the migration waits for. `approve` releases every hold; `resume` also releases all but
 * `approval`, `retire` and `sync`, measuring a failed gate again, retrying a failed switch, verifying
 * again, or retrying work that failed. The kinds:
 * - `failure`: work failed for a cause retrying cannot heal (a schema change, the wrong servers, a
 *   refusal, a constraint); resume checks the schema again when it changed, and retries;
 * - `sync`: reconciliation cannot carry a table's changes over; released by itself once it can
 *   (resume asks it to try again now; approve goes on regardless);
 * - `verification`: verification found differences that no write in flight explains; resume
 *   verifies again, approve accepts them.
 */
export interface MigrationHold {
  kind: 'approval' | 'gate' | 'rollback' | 'switch-failed' | 'retire' | 'failure' | 'sync' | 'verification';
  reason: string;
  since: number;
  /** For `failure` and `sync`: what failed, as the database or the check put it. */
  cause?: { code: string | null; table: string | null };
}

export interface TableProgress {
  table: string;
  /** Rows old's statistics counted when the migration prepared. */
  estimatedRows: number;
  rowsCopied: number;
  backfillDone: boolean;
  verification: VerificationReport | null;
}

export interface MigrationStatus {
  name: string;
  phase: MigrationPhase;
  /** The current step and the whole ramp, e.g. "live 25%". */
  step: string;
  stage: Stage;
  readPercent: number;
  position: number;
  steps: string[];
  paused: boolean;
  held: MigrationHold | null;
  tables: TableProgress[];
  /** True once the latest verification (since the last time the migration entered dual_write) found nothing left. */
  verifiedClean: boolean | null;
  lastGate: GateReport | null;
  queryBenchmark: QueryBenchmarkResult | null;
  switches: Array<{ direction: 'to-new' | 'to-old'; at: number } & WriteSwitchResult>;
  rollbacks: Array<{ from: string; to: string; at: number; by: string }>;
  /** When the soak after `complete` ends (workflow time, ms since epoch). */
  soakUntil: number | null;
  /** The latest things the migration did, newest last. */
  events: Array<{ at: number; text: string }>;
  /** What preparing warned about (an index only on one side, say): worth a look, not a refusal. */
  warnings: string[];
  /** Tables reconciliation cannot sync right now, and why. */
  syncFailures: SyncFailure[];
  error: string | null;
  runs: number;
}

export const migrationStatusQuery = defineQuery<MigrationStatus>('migrationStatus');
