// Verification of one table: proves the side being filled equals the authoritative side, chunk by
// chunk, in partitions verified side by side. Partition ranges come from the same key sample as the
// backfill; the last one has no upper end, so rows above the sampled maximum (on either side) are
// compared too. Mismatched chunks are compared row by row; a key still different after the settle
// delay with a change pending in the change log is a write in flight, compared again once synced; a
// key different with nothing pending is a difference, reported and, unless told otherwise, repaired
// through the syncer (activities/range-verifier.ts). The report is a query;
// the workflow continues as new, carrying where each partition got to, so a billion rows keep the
// history small and a restart resumes where it was. It takes the backfill's throttle (workflows/
// throttle.ts): it waits while old is busy, keeps to the row limit and rests for the nice ratio,
// all of which the operator may change while it runs (`throttle` and `tune` signals).
import {
  continueAsNew,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { TableRef } from '../model/tables';
import type { OpenKeyRange } from '../model/tables';
import type { ServerBinding } from '../model/servers';
import { addCounts, noCounts } from '../model/verification-counts';
import type { ConnectionName } from '../model/connections';
import { throttleSignal, tuneSignal, verificationReportQuery } from './messages';
import { ThrottleGate } from './throttle';
import type { ThrottleSettings } from '../model/throttle-settings';
import type { VerificationReport } from '../model/messages';
import { MIGRATION_NAME, MIGRATION_PHASE, MIGRATION_TABLE } from './search-attributes';

export interface VerificationInput {
  migration: string;
  /** The servers the migration was prepared on; bound here when absent (verification run on its own). */
  servers?: ServerBinding;
  table: TableRef;
  /** The authoritative side. */
  from: ConnectionName;
  to: ConnectionName;
  /** Rows per checksum (default 10,000). */
  chunkSize?: number;
  /** Partitions verified side by side (default 4). */
  partitions?: number;
  /** Chunks per activity (default 20). */
  chunksPerActivity?: number;
  /** How long a differing key gets to settle before it counts, in ms (default 2000). */
  settleMs?: number;
  /** How long keys with a change pending in the change log may take to be synced, in ms (default 60,000). */
  inFlightWaitMs?: number;
  /** Repair the differences found (default true). */
  repair?: boolean;
  /** The throttle: source health limits, the row limit (keys compared per second), the nice ratio. */
  throttle?: ThrottleSettings;
  /** Carried across continue-as-new. */
  resume?: { report: VerificationReport; partitions: PartitionCursor[]; servers: ServerBinding };
}

interface PartitionCursor {
  range: OpenKeyRange;
  reached: string[] | null;
  done: boolean;
}

const { planPartitions, bindServers } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  // Heartbeated while it runs (activities/heartbeats.ts): a dead worker's plan is retried in seconds.
  heartbeatTimeout: '15 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
});
const { verifyRange } = proxyActivities<Activities>({
  startToCloseTimeout: '1 hour',
  heartbeatTimeout: '15 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
  // To whichever worker has a free slot, not the one caching this workflow (see copyChunks).
  allowEagerDispatch: false,
});

function emptyReport(table: TableRef, startedAt: number): VerificationReport {
  return {
    table: `${table.schema}.${table.table}`,
    phase: 'planning',
    ...noCounts(),
    startedAt,
    finishedAt: null,
    rowsPerSecond: null,
    runs: 1,
  };
}

/** Runs started before verification was throttled compare at full speed: their histories replay unchanged. */
const VERIFICATION_THROTTLE = 'verification-throttle';

export async function verificationWorkflow(input: VerificationInput): Promise<VerificationReport> {
  const report = input.resume?.report ?? emptyReport(input.table, Date.now());
  if (input.resume !== undefined) report.runs += 1;
  setHandler(verificationReportQuery, () => report);
  // One gate for the table: its partitions share the row limit.
  const gate = new ThrottleGate(
    input.from,
    input.throttle,
    input.throttle?.maxRowsPerSecond ?? null,
    {},
    'verification',
  );
  setHandler(throttleSignal, ({ maxRowsPerSecond }) => gate.setRate(maxRowsPerSecond));
  setHandler(tuneSignal, ({ niceRatio }) => {
    if (niceRatio !== undefined) gate.setNice(niceRatio);
  });
  upsertSearchAttributes([
    { key: MIGRATION_NAME, value: input.migration },
    { key: MIGRATION_TABLE, value: report.table },
    { key: MIGRATION_PHASE, value: 'verification' },
  ]);
  const chunkSize = input.chunkSize ?? 10_000;
  const servers =
    input.resume?.servers ?? input.servers ?? (await bindServers({ migration: input.migration }));
  let cursors = input.resume?.partitions;
  if (cursors === undefined) {
    const plan = await planPartitions({
      migration: input.migration,
      servers,
      connection: input.from,
      table: input.table,
      partitions: input.partitions ?? 4,
      chunkSize,
    });
    const ranges: OpenKeyRange[] = plan.partitions.map((range, i) => ({
      lower: range.lower,
      upper: i === plan.partitions.length - 1 ? null : range.upper,
    }));
    cursors = (ranges.length > 0 ? ranges : [{ lower: null, upper: null }]).map((range) => ({
      range,
      reached: range.lower,
      done: false,
    }));
  }
  report.phase = 'verifying';

  let stopForNewRun = false;
  const throttled = patched(VERIFICATION_THROTTLE);
  const verifyPartition = async (cursor: PartitionCursor) => {
    while (!cursor.done && !stopForNewRun) {
      const chunksPerActivity = input.chunksPerActivity ?? 20;
      // Under a row limit an activity compares about a second of it.
      const maxChunks = throttled ? gate.chunksPerBatch(chunkSize, chunksPerActivity) : chunksPerActivity;
      const taken = chunkSize * maxChunks;
      if (throttled) await gate.beforeChunk(taken, () => false);
      const startedAt = Date.now();
      const result = await verifyRange({
        migration: input.migration,
        servers,
        from: input.from,
        to: input.to,
        table: input.table,
        range: { lower: cursor.reached, upper: cursor.range.upper },
        chunkSize,
        maxChunks,
        settleMs: input.settleMs ?? 2000,
        ...(input.inFlightWaitMs !== undefined && { inFlightWaitMs: input.inFlightWaitMs }),
        repair: input.repair ?? true,
      });
      if (throttled) {
        gate.afterBatch(taken, result.rowsFrom);
        gate.batchTook(Date.now() - startedAt);
      }
      addCounts(report, result);
      cursor.reached = result.reached;
      cursor.done = result.done;
      setCurrentDetails(
        `${report.table}: ${report.rowsFrom} rows in ${report.chunks} chunks compared, ${report.differences} differences, ${report.repaired} repaired, ${report.inFlight} in flight${gate.waitingFor !== null ? `; throttled: ${gate.waitingFor}` : ''}`,
      );
      if (workflowInfo().continueAsNewSuggested) stopForNewRun = true;
    }
  };
  await Promise.all(cursors.map(verifyPartition));
  if (cursors.some((cursor) => !cursor.done)) {
    await continueAsNew<typeof verificationWorkflow>({
      ...input,
      // The knobs as they are now, for the next run.
      ...(input.throttle !== undefined || gate.rateLimit !== null || gate.nice > 0
        ? { throttle: { ...input.throttle, maxRowsPerSecond: gate.rateLimit, niceRatio: gate.nice } }
        : {}),
      resume: { report, partitions: cursors, servers },
    });
  }
  report.phase = 'done';
  report.finishedAt = Date.now();
  const seconds = (report.finishedAt - report.startedAt) / 1000;
  report.rowsPerSecond = seconds > 0 ? Math.round(report.rowsFrom / seconds) : null;
  setCurrentDetails(
    `${report.table} verified: ${report.rowsFrom} rows, ${report.differences} differences, ${report.repaired} repaired, ${report.inFlight} still in flight`,
  );
  return report;
}
