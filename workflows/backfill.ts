// Backfill of one table: run by a migration (which has bound its servers, claimed and checked the
// table, and installed capture), or on its own, when it does all of that itself first (so every
// write from then on reaches the target through reconciliation). Splits the key space into
// partitions and copies them as child workflows, hot rows first when a predicate is given. Carries
// key ranges and counters only, never rows. Pause, resume and throttle signals are passed on to the
// partitions.
import {
  ParentClosePolicy,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
  type ChildWorkflowHandle,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { TableRef } from '../model/tables';
import type { KeyRange } from '../model/tables';
import type { ServerBinding } from '../model/servers';
import type { ConnectionName } from '../model/connections';
import { backfillPartitionWorkflow, type BackfillPartitionResult } from './backfill-partition';
import {
  backfillProgressQuery,
  partitionCopiedSignal,
  pauseSignal,
  resumeSignal,
  throttleSignal,
} from './messages';
import { PROGRESS_REPORT_MS, type BackfillProgress, type PartitionReport } from '../model/messages';
import { MIGRATION_NAME, MIGRATION_PHASE, MIGRATION_ROWS_COPIED, MIGRATION_TABLE } from './search-attributes';
import {
  DEFAULT_CHUNKS_IN_FLIGHT,
  DEFAULT_CHUNKS_PER_ACTIVITY,
  DEFAULT_PARTITIONS,
  DEFAULT_THROTTLE,
  type ThrottleSettings,
} from '../model/throttle-settings';

export interface BackfillTableInput {
  migration: string;
  source: ConnectionName;
  target: ConnectionName;
  table: TableRef;
  chunkSize: number;
  /** Create the table on the target from the source's definition when it does not exist. */
  createTargetTable?: boolean;
  /**
   * Set by the migration, which prepared the table already (servers bound, table checked and
   * claimed, guards and capture on): preparing again would take the table's trigger lock, and stall
   * writers, twice. Without it the backfill prepares the table itself.
   */
  prepared?: { servers: ServerBinding; estimatedRows: number };
  /** Key ranges copied side by side, each a child workflow (default 4; fewer for small tables). */
  partitions?: number;
  /** Chunk activities in flight per partition (default 2). */
  chunksInFlight?: number;
  /** Consecutive chunks per activity, each its own transaction and checkpoint (default 32). */
  chunksPerActivity?: number;
  /** Copy the rows matching this SQL condition first (e.g. recently active customers). */
  hotRowsWhere?: string;
  throttle?: ThrottleSettings;
}

export interface BackfillTableResult {
  rowsCopied: number;
  chunksDone: number;
}

const { bindServers, prepareTables, installChangeCapture, planPartitions } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '15 seconds',
  retry: { maximumInterval: '30 seconds' },
});

export async function backfillTableWorkflow(input: BackfillTableInput): Promise<BackfillTableResult> {
  const tableName = `${input.table.schema}.${input.table.table}`;
  const progress: BackfillProgress = {
    table: tableName,
    phase: 'preparing',
    estimatedRows: 0,
    paused: false,
    maxRowsPerSecond: input.throttle?.maxRowsPerSecond ?? DEFAULT_THROTTLE.maxRowsPerSecond,
    partitions: [],
    finished: { rowsCopied: 0, chunksDone: 0 },
  };
  const running = new Map<string, ChildWorkflowHandle<typeof backfillPartitionWorkflow>>();
  // The table's row rate is shared evenly by the partitions of the pass still copying: one that
  // finishes hands its share to the others, so together they keep to the limit, not below it.
  let partitionsInPass = 1;
  const share = () =>
    progress.maxRowsPerSecond === null ? null : progress.maxRowsPerSecond / partitionsInPass;
  const tell = (send: (child: ChildWorkflowHandle<typeof backfillPartitionWorkflow>) => Promise<void>) => {
    // A partition that just finished no longer takes signals; nothing is lost.
    for (const child of running.values()) void send(child).catch(() => undefined);
  };
  // What running partitions reported (partitionCopiedSignal), shown every few seconds at most.
  const reported = new Map<string, PartitionReport>();
  let copyingSince: number | null = null;
  let shownAt = 0;
  const showProgress = () => {
    const rows = progress.finished.rowsCopied + [...reported.values()].reduce((n, r) => n + r.rowsCopied, 0);
    const seconds = copyingSince === null ? 0 : (Date.now() - copyingSince) / 1000;
    const rate = seconds > 0 ? Math.round(rows / seconds) : 0;
    const left = Math.max(0, progress.estimatedRows - rows);
    const percent =
      progress.estimatedRows > 0 ? Math.min(100, Math.round((rows / progress.estimatedRows) * 100)) : null;
    const waiting = [
      ...new Set([...reported.values()].flatMap((r) => (r.waitingFor === null ? [] : [r.waitingFor]))),
    ];
    upsertSearchAttributes([{ key: MIGRATION_ROWS_COPIED, value: rows }]);
    setCurrentDetails(
      `${tableName}: ${rows} of ~${progress.estimatedRows} rows${percent !== null ? ` (${percent}%)` : ''}, ${rate} rows/s, ETA ${rate > 0 ? `${Math.round(left / rate)} s` : 'unknown'}; ${progress.phase}${progress.paused ? ' (paused)' : ''}${waiting.length > 0 ? `; throttled: ${waiting.join('; ')}` : ''}`,
    );
  };
  setHandler(partitionCopiedSignal, (report) => {
    if (!running.has(report.workflowId)) return;
    reported.set(report.workflowId, report);
    if (Date.now() - shownAt >= PROGRESS_REPORT_MS && patched('progress-while-copying')) {
      shownAt = Date.now();
      showProgress();
    }
  });
  setHandler(backfillProgressQuery, () => progress);
  setHandler(pauseSignal, () => {
    progress.paused = true;
    tell((child) => child.signal(pauseSignal));
  });
  setHandler(resumeSignal, () => {
    progress.paused = false;
    tell((child) => child.signal(resumeSignal));
  });
  setHandler(throttleSignal, ({ maxRowsPerSecond }) => {
    progress.maxRowsPerSecond = maxRowsPerSecond;
    const perPartition = share();
    tell((child) => child.signal(throttleSignal, { maxRowsPerSecond: perPartition }));
  });
  upsertSearchAttributes([
    { key: MIGRATION_NAME, value: input.migration },
    { key: MIGRATION_TABLE, value: tableName },
    { key: MIGRATION_PHASE, value: 'backfill-preparing' },
  ]);

  let servers: ServerBinding;
  if (input.prepared !== undefined) {
    servers = input.prepared.servers;
    progress.estimatedRows = input.prepared.estimatedRows;
  } else {
    // Refusals (hazard 10) come before anything is written on either side.
    servers = await bindServers({ migration: input.migration });
    const prepared = await prepareTables({
      migration: input.migration,
      servers,
      tables: [
        {
          table: input.table,
          createIfMissing: input.createTargetTable ?? false,
          ...(input.hotRowsWhere !== undefined && { hotRowsWhere: input.hotRowsWhere }),
        },
      ],
    });
    progress.estimatedRows = prepared.tables[0]?.estimatedRows ?? 0;
    // Capture first, plan second: every row written after the plan is in the change log.
    await installChangeCapture({
      migration: input.migration,
      servers,
      connection: input.source,
      tables: [input.table],
    });
  }
  const plan = await planPartitions({
    migration: input.migration,
    servers,
    connection: input.source,
    table: input.table,
    partitions: input.partitions ?? DEFAULT_PARTITIONS,
    chunkSize: input.chunkSize,
  });

  const copy = async (pass: 'hot' | 'main', ranges: KeyRange[], predicate?: string) => {
    copyingSince ??= Date.now();
    partitionsInPass = Math.max(1, ranges.length);
    const children = await Promise.all(
      ranges.map(async (range, i) => {
        const workflowId = `${workflowInfo().workflowId}/${pass}-${i + 1}`;
        const startedPaused = progress.paused;
        const startedRate = share();
        const child = await startChild(backfillPartitionWorkflow, {
          workflowId,
          parentClosePolicy: ParentClosePolicy.TERMINATE,
          args: [
            {
              migration: input.migration,
              servers,
              source: input.source,
              target: input.target,
              table: input.table,
              pass,
              range,
              ...(predicate !== undefined && { predicate }),
              chunkSize: input.chunkSize,
              chunksInFlight: input.chunksInFlight ?? DEFAULT_CHUNKS_IN_FLIGHT,
              chunksPerActivity: input.chunksPerActivity ?? DEFAULT_CHUNKS_PER_ACTIVITY,
              ...(input.throttle !== undefined && { throttle: input.throttle }),
              maxRowsPerSecond: startedRate,
              paused: startedPaused,
            },
          ],
        });
        // Listed once it exists, so whoever queries the list can query the partition.
        progress.partitions.push({ workflowId, pass, range, done: false });
        running.set(workflowId, child);
        // A signal that arrived while the child was starting did not reach it: pass it on now.
        if (progress.paused !== startedPaused) {
          void child.signal(progress.paused ? pauseSignal : resumeSignal).catch(() => undefined);
        }
        if (share() !== startedRate) {
          void child.signal(throttleSignal, { maxRowsPerSecond: share() }).catch(() => undefined);
        }
        return child;
      }),
    );
    await Promise.all(
      children.map(async (child) => {
        const result: BackfillPartitionResult = await child.result();
        running.delete(child.workflowId);
        reported.delete(child.workflowId);
        partitionsInPass = Math.max(1, partitionsInPass - 1);
        if (
          progress.maxRowsPerSecond !== null &&
          running.size > 0 &&
          patched('row-limit-shared-by-running-partitions')
        ) {
          const perPartition = share();
          tell((other) => other.signal(throttleSignal, { maxRowsPerSecond: perPartition }));
        }
        const entry = progress.partitions.find((p) => p.workflowId === child.workflowId);
        if (entry !== undefined) entry.done = true;
        progress.finished.rowsCopied += result.rowsCopied;
        progress.finished.chunksDone += result.chunksDone;
        setCurrentDetails(
          `${tableName}: ${progress.partitions.filter((p) => p.done).length}/${progress.partitions.length} partitions done, ${progress.finished.rowsCopied} rows copied`,
        );
      }),
    );
  };

  if (plan.maxKey !== null) {
    if (input.hotRowsWhere !== undefined) {
      progress.phase = 'hot-rows';
      upsertSearchAttributes([{ key: MIGRATION_PHASE, value: 'backfill-hot-rows' }]);
      await copy('hot', [{ lower: null, upper: plan.maxKey }], input.hotRowsWhere);
    }
    progress.phase = 'copying';
    upsertSearchAttributes([{ key: MIGRATION_PHASE, value: 'backfill' }]);
    await copy('main', plan.partitions);
  }
  progress.phase = 'done';
  upsertSearchAttributes([
    { key: MIGRATION_PHASE, value: 'backfill-done' },
    { key: MIGRATION_ROWS_COPIED, value: progress.finished.rowsCopied },
  ]);
  return { ...progress.finished };
}
