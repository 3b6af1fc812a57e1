// What the activities tell the worker's metrics (worker/metrics.ts serves them): rows copied, the
// source's health as the throttle saw it, the change log's backlog and lag, verification's counts.
// The worker injects an implementation; without one (tests, the benchmarks) nothing is recorded.
// Each figure is labelled by migration and table where the activity knows them: from its input,
// else (the throttle's source health check names neither) from its workflow's id.
import { Context } from '@temporalio/activity';
import { scopeOfWorkflowId } from '../model/ids';
import type { ConnectionName } from '../model/connections';
import type { TableRef } from '../model/tables';
import type { VerificationCounts } from '../model/verification-counts';

/** Which limit of the source's health held the backfill back. */
export type SourceLimit = 'probe_latency' | 'active_connections' | 'replica_lag';

export interface SourceHealthFigures {
  limit?: SourceLimit | null;
  probeLatencyMs: number;
  activeConnections: number;
  replicaLagSeconds: number;
}

export interface DrainScope {
  migration: string;
  from: ConnectionName;
  to: ConnectionName;
}

export interface DrainFigures {
  /** Entries applied by this batch. */
  entries: number;
  /** Entries left in the change log, and the age in seconds of the oldest. */
  backlog: number;
  lagSeconds: number;
  /** Tables whose entries could not be synced, with how many of this batch's stayed. */
  failed: Array<{ table: string; entries: number }>;
}

export interface MigrationTableLabels {
  migration: string;
  /** schema.table */
  table: string;
}

export interface ActivityMetrics {
  /** A chunk committed on the target by this worker (an earlier attempt's chunk is not counted). */
  chunkCopied(labels: MigrationTableLabels, rowsRead: number, rowsCopied: number): void;
  /** A source health check of a backfill: `limit` is what made it wait, null when it may copy. */
  sourceChecked(
    labels: MigrationTableLabels | null,
    source: ConnectionName,
    health: SourceHealthFigures,
  ): void;
  /** A change log drain batch: what it applied, what is left and how old the oldest entry is. */
  changeLogDrained(scope: DrainScope, drained: DrainFigures): void;
  /** What one verification activity compared (only its own work, not a resumed attempt's). */
  rangeVerified(labels: MigrationTableLabels, counts: VerificationCounts): void;
}

export function tableLabel(table: TableRef): string {
  return `${table.schema}.${table.table}`;
}

/**
 * The migration and table of the workflow running the current activity: read from its id when it is
 * a migration's backfill partition, else from what earlier activities of the same workflow named
 * (a backfill started on its own, as tests and benchmarks do), else null.
 */
export class WorkflowLabels {
  private readonly seen = new Map<string, MigrationTableLabels>();

  constructor(private readonly limit = 10_000) {}

  /** Remembers the labels an activity's input named for its workflow. */
  remember(labels: MigrationTableLabels): void {
    const workflowId = currentWorkflowId();
    if (workflowId === undefined || this.seen.has(workflowId)) return;
    if (this.seen.size >= this.limit) {
      for (const oldest of this.seen.keys()) {
        this.seen.delete(oldest);
        break;
      }
    }
    this.seen.set(workflowId, labels);
  }

  current(): MigrationTableLabels | null {
    const workflowId = currentWorkflowId();
    if (workflowId === undefined) return null;
    const scope = scopeOfWorkflowId(workflowId);
    if (scope.migration !== undefined && scope.table !== undefined) {
      return { migration: scope.migration, table: scope.table };
    }
    return this.seen.get(workflowId) ?? null;
  }
}

function currentWorkflowId(): string | undefined {
  try {
    return Context.current().info.workflowExecution?.workflowId;
  } catch {
    return undefined; // Called outside an activity (a test calling the function directly).
  }
}

/** The activities whose work is counted, as the worker's metrics see them (methods: any input that has these fields). */
export interface ObservedActivities {
  findChunkBounds(input: { migration: string; table: TableRef }): Promise<unknown>;
  copyChunks(input: {
    migration: string;
    table: TableRef;
    source: ConnectionName;
  }): Promise<{ source?: SourceHealthFigures }>;
  checkSourceHealth(input: { connection: ConnectionName }): Promise<SourceHealthFigures>;
  drainChangeLog(input: DrainScope): Promise<DrainFigures>;
  verifyRange(input: { migration: string; table: TableRef }): Promise<VerificationCounts>;
}

/**
 * Wraps the observed activities so that each reports to `metrics` (chunks are reported by the
 * copier's own hook, one by one, as they commit). A resumed verification reports only what it
 * compared itself: the counts it resumed from were reported by the attempt that made them.
 */
export function observeActivities<T extends ObservedActivities>(
  activities: T,
  metrics: ActivityMetrics,
  labels: WorkflowLabels,
): T {
  const observed: ObservedActivities = {
    findChunkBounds: (input) => {
      labels.remember({ migration: input.migration, table: tableLabel(input.table) });
      return activities.findChunkBounds(input);
    },
    copyChunks: async (input) => {
      labels.remember({ migration: input.migration, table: tableLabel(input.table) });
      const copied = await activities.copyChunks(input);
      // The batch looked at the source's health first (the backfill's throttle).
      if (copied.source !== undefined) metrics.sourceChecked(labels.current(), input.source, copied.source);
      return copied;
    },
    checkSourceHealth: async (input) => {
      const health = await activities.checkSourceHealth(input);
      metrics.sourceChecked(labels.current(), input.connection, health);
      return health;
    },
    drainChangeLog: async (input) => {
      const drained = await activities.drainChangeLog(input);
      metrics.changeLogDrained(input, drained);
      return drained;
    },
    verifyRange: async (input) => {
      const resumed = resumedCounts();
      const counts = await activities.verifyRange(input);
      metrics.rangeVerified(
        { migration: input.migration, table: tableLabel(input.table) },
        resumed === undefined ? counts : minus(counts, resumed),
      );
      return counts;
    },
  };
  return { ...activities, ...observed };
}

function resumedCounts(): VerificationCounts | undefined {
  try {
    const details = Context.current().info.heartbeatDetails as { result?: VerificationCounts } | undefined;
    return details?.result;
  } catch {
    return undefined;
  }
}

function minus(counts: VerificationCounts, before: VerificationCounts): VerificationCounts {
  const delta = { ...counts };
  for (const key of [
    'rowsFrom',
    'rowsTo',
    'chunks',
    'mismatchedChunks',
    'differences',
    'settled',
    'inFlight',
    'repaired',
  ] as const) {
    delta[key] = Math.max(0, counts[key] - before[key]);
  }
  return delta;
}
