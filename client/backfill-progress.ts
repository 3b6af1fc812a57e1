// A table backfill's progress as an operator wants it: rows and chunks so far, rate and ETA. The
// table workflow knows its partitions and the totals of those that finished; each running partition
// workflow knows its live counts. Only running partitions are queried: a finished workflow answers a
// query only after a worker replays its whole history, which is what made a status take seconds.
// Scripts and the CLI call this; it only queries, so it never changes a migration.
import type { Client } from '@temporalio/client';
import { backfillProgressQuery, partitionProgressQuery } from '../workflows/messages';
import type { PartitionProgress } from '../model/messages';
import type { LatencyThrottleState } from '../model/latency-throttle';

export interface BackfillReport {
  table: string;
  phase: string;
  paused: boolean;
  /** The table's row limit as set (config or `migrate throttle`), not a partition's share; null: none. */
  maxRowsPerSecond: number | null;
  rowsCopied: number;
  rowsRead: number;
  chunksDone: number;
  chunksInFlight: number;
  estimatedRows: number;
  /** Rows copied of the estimate, 0–100 (capped); null when there is no estimate. */
  percent: number | null;
  /** Rows read per second by the partitions copying now (each since it started). */
  rowsPerSecond: number;
  /** Seconds left at that rate for the estimated rows not read yet; null when unknown. */
  etaSeconds: number | null;
  /** What partitions are waiting for now (throttle reasons, pause), deduplicated. */
  waitingFor: string[];
  /** How often a throttle made the running partitions wait, by reason kind. */
  throttled: Record<string, number>;
  /**
   * The brake that follows the application's latency: its limit (null: not braking), why, and the
   * latest reading against its target; null when it is off or has no baseline yet.
   */
  brake: {
    limit: number | null;
    reason: string | null;
    baseline: LatencyThrottleState['baseline'];
    last: LatencyThrottleState['last'];
    decreases: number;
    increases: number;
  } | null;
  /** Why the copy runs without the brake though it is on (its baseline could not be read); else null. */
  brakeUnread: string | null;
  partitionsDone: number;
  partitionsRunning: number;
  /** The partitions copying now (and, when asked for, those that finished). */
  partitions: PartitionProgress[];
}

/**
 * The backfill's figures now. `finishedPartitions` also queries the partitions that finished (slow:
 * each is replayed) and lists them in `partitions`, for scripts that want every partition's counts.
 */
export async function readBackfillProgress(
  client: Client,
  workflowId: string,
  options: { finishedPartitions?: boolean } = {},
): Promise<BackfillReport> {
  const table = await client.workflow.getHandle(workflowId).query(backfillProgressQuery);
  const query = (id: string) => client.workflow.getHandle(id).query(partitionProgressQuery);
  // Partitions the table has not counted as finished yet (one may have just ended: its rows count here).
  const partitions = await Promise.all(
    table.partitions.filter((p) => !p.done).map((p) => query(p.workflowId)),
  );
  const finished =
    options.finishedPartitions === true
      ? await Promise.all(table.partitions.filter((p) => p.done).map((p) => query(p.workflowId)))
      : [];
  const running = partitions.filter((p) => !p.done);
  const sum = (pick: (p: PartitionProgress) => number) => partitions.reduce((total, p) => total + pick(p), 0);
  // A partition's rate since it started; a finished one no longer adds to the rate.
  const rowsPerSecond = running.reduce((total, p) => {
    const seconds = (p.updatedAt - p.startedAt) / 1000;
    return total + (seconds > 0 ? p.rowsRead / seconds : 0);
  }, 0);
  const rowsCopied = table.finished.rowsCopied + sum((p) => p.rowsCopied);
  const mainRead = sum((p) => (p.pass === 'main' ? p.rowsRead : 0));
  const mainFinished = table.phase === 'copying' || table.phase === 'done' ? table.finished.rowsCopied : 0;
  const remaining = Math.max(0, table.estimatedRows - mainFinished - mainRead);
  const throttled: Record<string, number> = {};
  for (const p of running)
    for (const [kind, n] of Object.entries(p.throttled)) throttled[kind] = (throttled[kind] ?? 0) + n;
  return {
    table: table.table,
    phase: table.phase,
    paused: table.paused,
    maxRowsPerSecond: table.maxRowsPerSecond,
    rowsCopied,
    rowsRead: table.finished.rowsCopied + sum((p) => p.rowsRead),
    chunksDone: table.finished.chunksDone + sum((p) => p.chunksDone),
    chunksInFlight: running.reduce((total, p) => total + p.chunksInFlight, 0),
    estimatedRows: table.estimatedRows,
    percent: table.phase === 'done' ? 100 : percentOf(rowsCopied, table.estimatedRows),
    rowsPerSecond: Math.round(rowsPerSecond),
    etaSeconds: table.phase === 'done' ? 0 : rowsPerSecond > 0 ? Math.round(remaining / rowsPerSecond) : null,
    waitingFor: [...new Set(running.flatMap((p) => (p.waitingFor === null ? [] : [p.waitingFor])))],
    throttled,
    brake:
      table.latency === undefined
        ? null
        : {
            limit: table.latency.limit,
            reason: table.latency.reason,
            baseline: table.latency.baseline,
            last: table.latency.last,
            decreases: table.latency.decreases,
            increases: table.latency.increases,
          },
    brakeUnread: table.latencyUnread ?? null,
    partitionsDone: table.partitions.filter((p) => p.done).length,
    partitionsRunning: running.length,
    partitions: [...finished, ...running],
  };
}

/** `part` of `whole` in percent, one decimal, capped at 100 (an estimate can be low); null without one. */
export function percentOf(part: number, whole: number): number | null {
  if (whole <= 0) return null;
  return Math.min(100, Math.round((part / whole) * 1000) / 10);
}
