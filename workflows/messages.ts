// Signals, queries and updates, defined once and imported by workflows and the client alike.
import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { KeyRange } from '../activities/key-ranges';
import type { TableRef } from '../activities/inspector';
import type { VerificationCounts } from '../activities/verification-counts';

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
  /** Why the partition is waiting now (throttle or pause), or null. */
  waitingFor: string | null;
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
  stopping: boolean;
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
