// What the workflows, the client and the router say to each other: the names of the signals,
// queries and updates (workflows/messages.ts defines them for Temporal from these names; the router
// and the activities, which load no workflow code, signal and query by name) and the shapes of what
// they carry. Plain data.
import type { LatencyThrottleState } from './latency-throttle';
import type { QueryBenchmarkResult } from './query-benchmark';
import type { Stage } from './stages';
import type { KeyRange, TableRef } from './tables';
import type { VerificationCounts } from './verification-counts';

/** Every message's name, once. */
export const MESSAGE = {
  pause: 'pause',
  resume: 'resume',
  throttle: 'throttle',
  tune: 'tune',
  backfillProgress: 'backfillProgress',
  partitionProgress: 'partitionProgress',
  discrepancy: 'discrepancy',
  drainAndStop: 'drainAndStop',
  stop: 'stop',
  backfillTrouble: 'backfillTrouble',
  syncTrouble: 'syncTrouble',
  retrySync: 'retrySync',
  reconciliationStatus: 'reconciliationStatus',
  verificationReport: 'verificationReport',
  rollback: 'rollback',
  approve: 'approve',
  rollbackTo: 'rollbackTo',
  abort: 'abort',
  migrationStatus: 'migrationStatus',
  setThrottle: 'setThrottle',
  partitionCopied: 'partitionCopied',
  backfillCopied: 'backfillCopied',
} as const;

/** How often, at most, a partition tells its table and the Web UI how far it got, in ms. */
export const PROGRESS_REPORT_MS = 5000;

/** What a partition tells its table while copying (at most every PROGRESS_REPORT_MS). */
export interface PartitionReport {
  workflowId: string;
  rowsCopied: number;
  chunksDone: number;
  waitingFor: string | null;
}

/** What a table's backfill tells its migration while copying, for the migration's current details. */
export interface BackfillReport {
  /** `schema.table`. */
  table: string;
  rowsCopied: number;
  /** Old's estimate when the migration prepared. */
  estimatedRows: number;
  /** The table's rate since it started copying. */
  rowsPerSecond: number;
  /** What its partitions wait for now (a throttle reason), if anything. */
  waitingFor: string[];
}

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
  /** The brake that follows the application's latency, once it has its baseline; absent when off. */
  latency?: LatencyThrottleState;
  /** Why the brake has no baseline (its reading failed): the copy runs without it. */
  latencyUnread?: string;
}
/** Keys that differ between the sides (a failed mirror write, a verifier finding): sync them. */
export interface DiscrepancyBatch {
  table: TableRef;
  keys: string[][];
}
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

/** What reconciliation reports before its first drain. */
export function idleReconciliationStatus(): ReconciliationStatus {
  return {
    runs: 0,
    backlog: 0,
    changeLogBacklog: 0,
    queuedDiscrepancyKeys: 0,
    lagSeconds: 0,
    entriesApplied: 0,
    keysSynced: 0,
    rowsUpserted: 0,
    rowsDeleted: 0,
    lastDrainAt: null,
    stopping: false,
    failing: [],
  };
}
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
/**
 * `migrate throttle`: the copy's knobs, each left as it is when absent. `maxRowsPerSecond`: the row
 * limit for each table (null lifts it); `latencyRatio`: the latency brake's target, a multiple of
 * the application's baseline (null switches the brake off); `niceRatio`: after each batch of chunks,
 * a partition rests this fraction of the batch's time (0: never); `copyPaused`: copying stops (true)
 * or goes on (false) while the rest of the migration does not pause.
 */
export interface ThrottleRequest {
  maxRowsPerSecond?: number | null;
  latencyRatio?: number | null;
  niceRatio?: number;
  copyPaused?: boolean;
  by?: string;
}
/** The knobs an operator set (absent: never set, the config's value holds). */
export type CopyKnobs = Omit<ThrottleRequest, 'by'>;
export interface ThrottleResult extends CopyKnobs {
  /** Backfills running now that were told (later ones start with it). */
  backfillsTold: number;
}
/** What reaches a table's backfill (and its partitions) of the latency brake and nice ratio. */
export interface TuneRequest {
  latencyRatio?: number | null;
  niceRatio?: number;
}

export const MAX_NICE_RATIO = 100;

/** Why a throttle request is refused, or null when it is valid (shared by the CLI and the workflow). */
export function throttleRequestProblem(request: unknown): string | null {
  if (typeof request !== 'object' || request === null) return 'a throttle request is an object';
  const { maxRowsPerSecond, latencyRatio, niceRatio, copyPaused } = request as Record<string, unknown>;
  if (
    maxRowsPerSecond === undefined &&
    latencyRatio === undefined &&
    niceRatio === undefined &&
    copyPaused === undefined
  ) {
    return 'say what to change: the row limit, the latency target, the nice ratio, or pause or resume copying';
  }
  if (
    maxRowsPerSecond !== undefined &&
    maxRowsPerSecond !== null &&
    (typeof maxRowsPerSecond !== 'number' ||
      !Number.isInteger(maxRowsPerSecond) ||
      maxRowsPerSecond < 1 ||
      maxRowsPerSecond > 1_000_000_000)
  ) {
    return `the row limit must be a whole number of rows per second from 1 to 1000000000, or off (got ${JSON.stringify(maxRowsPerSecond)})`;
  }
  if (
    latencyRatio !== undefined &&
    latencyRatio !== null &&
    (typeof latencyRatio !== 'number' ||
      !Number.isFinite(latencyRatio) ||
      latencyRatio < 1.1 ||
      latencyRatio > 1000)
  ) {
    return `the latency target must be a ratio of the application's baseline from 1.1 to 1000, or off (got ${JSON.stringify(latencyRatio)})`;
  }
  if (
    niceRatio !== undefined &&
    (typeof niceRatio !== 'number' ||
      !Number.isFinite(niceRatio) ||
      niceRatio < 0 ||
      niceRatio > MAX_NICE_RATIO)
  ) {
    return `the nice ratio must be a number from 0 to ${MAX_NICE_RATIO} (the fraction of each batch's time to rest after it) (got ${JSON.stringify(niceRatio)})`;
  }
  if (copyPaused !== undefined && typeof copyPaused !== 'boolean') {
    return `copyPaused must be true or false (got ${JSON.stringify(copyPaused)})`;
  }
  return null;
}
export interface ApproveResult {
  /** What the approval released, e.g. "entering switched". */
  released: string;
}
export interface RollbackResult {
  from: string;
  to: string;
}
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
  kind:
    | 'approval'
    | 'gate'
    | 'rollback'
    | 'switch-failed'
    | 'fence'
    | 'retire'
    | 'failure'
    | 'sync'
    | 'verification';
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
  /**
   * Each step into `live` from a step whose mirrors may trail their writes: when reads went to new
   * and how long the write fence was up before, until every router's trailing mirrors landed.
   * Absent in runs carried over from before it was kept.
   */
  liveFences?: Array<{ at: number; fencedMs: number }>;
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
  /** The verification round under way or last run; absent before the first. */
  verificationRound?: number;
  /** The row limit for each table an operator set (`migrate throttle`; null: lifted); absent: never set. */
  maxRowsPerSecond?: number | null;
  /** The other knobs of `migrate throttle` an operator set; absent: none set. */
  copyKnobs?: Omit<CopyKnobs, 'maxRowsPerSecond'>;
}

export interface WriteSwitchResult {
  switched: boolean;
  /** Routers that did not acknowledge the fence in time (when the switch aborted for it). */
  missing: string[];
  /** Workflow time from raising the fence to lifting it: the longest any write waited. */
  fencedMs: number;
  changesDrained: number;
  /** Where the fence time went, in ms: acknowledged, then guard, drain, sequences, capture, stage. */
  stepsMs?: Record<string, number>;
  reason?: string;
}
