// A table backfill's progress as an operator wants it: rows and chunks so far, rate and ETA. The
// table workflow knows its partitions; each partition workflow knows its live counts. Scripts and
// the CLI call this; it only queries, so it never changes a migration.
import type { Client } from '@temporalio/client';
import { backfillProgressQuery, partitionProgressQuery } from '../workflows/messages';
import type { PartitionProgress } from '../model/messages';

export interface BackfillReport {
  table: string;
  phase: string;
  paused: boolean;
  rowsCopied: number;
  rowsRead: number;
  chunksDone: number;
  chunksInFlight: number;
  estimatedRows: number;
  /** Rows read per second since the first partition started. */
  rowsPerSecond: number;
  /** Seconds left at that rate for the estimated rows not read yet; null when unknown. */
  etaSeconds: number | null;
  /** What partitions are waiting for now (throttle reasons, pause), deduplicated. */
  waitingFor: string[];
  partitions: PartitionProgress[];
}

export async function readBackfillProgress(client: Client, workflowId: string): Promise<BackfillReport> {
  const table = await client.workflow.getHandle(workflowId).query(backfillProgressQuery);
  const partitions = await Promise.all(
    table.partitions.map((p) => client.workflow.getHandle(p.workflowId).query(partitionProgressQuery)),
  );
  const sum = (pick: (p: PartitionProgress) => number) => partitions.reduce((total, p) => total + pick(p), 0);
  const rowsRead = sum((p) => p.rowsRead);
  const started = Math.min(...partitions.map((p) => p.startedAt));
  const latest = Math.max(...partitions.map((p) => p.updatedAt));
  const seconds = partitions.length > 0 ? (latest - started) / 1000 : 0;
  const rowsPerSecond = seconds > 0 ? rowsRead / seconds : 0;
  const remaining = Math.max(0, table.estimatedRows - sum((p) => (p.pass === 'main' ? p.rowsRead : 0)));
  return {
    table: table.table,
    phase: table.phase,
    paused: table.paused,
    rowsCopied: sum((p) => p.rowsCopied),
    rowsRead,
    chunksDone: sum((p) => p.chunksDone),
    chunksInFlight: sum((p) => p.chunksInFlight),
    estimatedRows: table.estimatedRows,
    rowsPerSecond: Math.round(rowsPerSecond),
    etaSeconds: table.phase === 'done' ? 0 : rowsPerSecond > 0 ? Math.round(remaining / rowsPerSecond) : null,
    waitingFor: [...new Set(partitions.flatMap((p) => (p.waitingFor === null ? [] : [p.waitingFor])))],
    partitions,
  };
}
