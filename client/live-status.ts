// The live view of a migration, for `migrate status` and `migrate watch`: its status, with each
// running backfill's figures (rows of the estimate, rate, ETA, chunks, throttle), reconciliation's
// backlog and lag, and the verification round in progress, read in one round of queries side by
// side. Workflows that have finished are not queried (each would be replayed by a worker first).
// Only queries: reading it never changes a migration.
import type { Client } from '@temporalio/client';
import { migrationWorkflowId, reconciliationWorkflowId } from '../model/ids';
import type {
  MigrationStatus,
  ReconciliationStatus,
  TableProgress,
  VerificationReport,
} from '../model/messages';
import { reconciliationStatusQuery, verificationReportQuery } from '../workflows/messages';
import { percentOf, readBackfillProgress, type BackfillReport } from './backfill-progress';
import type { LatencySignal } from '../model/latency-throttle';

/** How a status line names what the brake's latest reading went by. */
const SIGNAL_NAMES: Record<LatencySignal, string> = {
  routers: 'application p99',
  probe: 'probe',
  statements: 'application statements mean',
};

export interface LiveTableProgress extends TableProgress {
  /** Rows copied of the estimate, 0–100; null before the estimate. */
  percent: number | null;
  /** The backfill's live figures while it runs; null once done or before it starts. */
  backfill: BackfillReport | null;
  /** The verification of this table running now; null when none runs. */
  verifying: VerificationReport | null;
}

export interface LiveStatus extends MigrationStatus {
  tables: LiveTableProgress[];
  /** Reconciliation's backlog and lag; null before it runs or after it ended. */
  sync: ReconciliationStatus | null;
  /** How long reading all of it took, in ms. */
  readMs: number;
}

const ENDED = ['retired', 'aborted'];

/** Reads the live view; `status` is the migration's own status (MigrationControl.status()). */
export async function readLiveStatus(
  client: Client,
  status: MigrationStatus,
  startedAt = Date.now(),
): Promise<LiveStatus> {
  const workflowId = migrationWorkflowId(status.name);
  const quietly = <T>(read: () => Promise<T>): Promise<T | null> => read().catch(() => null);
  const ended = ENDED.includes(status.phase) || status.error !== null;
  const round = status.verificationRound ?? 0;
  const [tables, sync] = await Promise.all([
    Promise.all(
      status.tables.map(async (table): Promise<LiveTableProgress> => {
        const backfill =
          ended || table.backfillDone || status.phase === 'preparing'
            ? null
            : await quietly(() => readBackfillProgress(client, `${workflowId}/backfill-${table.table}`));
        const verifying =
          !ended && status.phase === 'verifying' && round > 0
            ? await quietly(() =>
                client.workflow
                  .getHandle(`${workflowId}/verify-${table.table}-${round}`)
                  .query(verificationReportQuery),
              )
            : null;
        const rowsCopied = backfill?.rowsCopied ?? table.rowsCopied;
        return {
          ...table,
          rowsCopied,
          percent: table.backfillDone ? 100 : percentOf(rowsCopied, table.estimatedRows),
          backfill,
          verifying: verifying?.phase === 'done' ? null : verifying,
        };
      }),
    ),
    ended || status.phase === 'preparing'
      ? null
      : quietly(() =>
          client.workflow.getHandle(reconciliationWorkflowId(status.name)).query(reconciliationStatusQuery),
        ),
  ]);
  return { ...status, tables, sync, readMs: Date.now() - startedAt };
}

function seconds(total: number): string {
  if (total < 60) return `${total} s`;
  if (total < 3600) return `${Math.floor(total / 60)} min ${total % 60} s`;
  return `${Math.floor(total / 3600)} h ${Math.floor((total % 3600) / 60)} min`;
}

/** A bar of `width` characters, `percent` of it filled. */
export function bar(percent: number | null, width = 20): string {
  const filled = Math.round(((percent ?? 0) / 100) * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}]`;
}

/** One table's lines: rows of the estimate, rate, ETA, chunks, throttle; verification. */
export function tableLines(table: LiveTableProgress | TableProgress, bars = false): string[] {
  const live = 'backfill' in table ? table : null;
  const lines: string[] = [];
  const backfill = live?.backfill ?? null;
  if (table.backfillDone) {
    lines.push(`  ${table.table}: backfilled ${table.rowsCopied} rows`);
  } else if (backfill === null) {
    lines.push(
      `  ${table.table}: backfill not started${table.estimatedRows > 0 ? ` (about ${table.estimatedRows} rows)` : ''}`,
    );
  } else {
    const percent = live?.percent ?? null;
    lines.push(
      `  ${table.table}: ${bars ? `${bar(percent)} ` : ''}${backfill.rowsCopied} of ~${backfill.estimatedRows} rows${percent !== null ? ` (${percent}%)` : ''}, ${backfill.rowsPerSecond} rows/s, ETA ${backfill.etaSeconds === null ? 'unknown' : seconds(backfill.etaSeconds)}; ${backfill.phase}${backfill.paused ? ' (paused)' : ''}`,
    );
    lines.push(
      `    chunks ${backfill.chunksDone} done, ${backfill.chunksInFlight} in flight; partitions ${backfill.partitionsDone} done, ${backfill.partitionsRunning} running`,
    );
    const limit =
      backfill.maxRowsPerSecond === null ? 'no row limit' : `row limit ${backfill.maxRowsPerSecond} rows/s`;
    lines.push(
      `    throttle: ${backfill.waitingFor.length > 0 ? `waiting: ${backfill.waitingFor.join('; ')}` : 'not waiting'} (${limit})`,
    );
    const brake = backfill.brake;
    if (brake === null && backfill.brakeUnread !== null)
      lines.push(`    latency brake: ${backfill.brakeUnread}`);
    if (brake !== null) {
      const reading =
        brake.last === null
          ? `baseline ${brake.baseline.routersMs !== null ? `p99 ${brake.baseline.routersMs} ms through routers, ` : ''}probe ${brake.baseline.probeMs} ms${brake.baseline.statementsMs != null ? `, statements mean ${brake.baseline.statementsMs} ms` : ''}`
          : brake.last.applicationIdle === true
            ? `the application ran nothing on the source; probe ${brake.last.ms} ms`
            : `${SIGNAL_NAMES[brake.last.by]} ${brake.last.ms} ms, target ${brake.last.targetMs} ms`;
      const moves = `${brake.decreases} down, ${brake.increases} up`;
      lines.push(
        brake.limit !== null && brake.reason !== null
          ? `    latency brake: ${brake.reason} (${moves})`
          : `    latency brake: not braking (${reading}; ${moves})`,
      );
    }
  }
  const verifying = live?.verifying ?? null;
  if (verifying !== null) {
    lines.push(
      `    verifying: ${verifying.rowsFrom} rows in ${verifying.chunks} chunks compared, ${verifying.differences} differences so far (${verifying.phase})`,
    );
  } else if (table.verification !== null) {
    const v = table.verification;
    lines.push(
      `    verified ${v.rowsFrom} rows, ${v.differences} differences, ${v.repaired} repaired, ${v.settled} writes in flight settled, ${v.inFlight} still in flight`,
    );
  } else {
    lines.push('    not verified yet');
  }
  return lines;
}

/** Reconciliation's line: backlog and lag. */
export function syncLine(sync: ReconciliationStatus): string {
  return `  sync: backlog ${sync.backlog} (${sync.changeLogBacklog} changes, ${sync.queuedDiscrepancyKeys} keys), lag ${sync.lagSeconds.toFixed(1)} s, ${sync.entriesApplied} changes applied${sync.failing.length > 0 ? `, ${sync.failing.length} tables failing` : ''}`;
}
