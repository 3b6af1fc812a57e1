// Backfill of one table: run by a migration (which has bound its servers, claimed and checked the
// table, and installed capture), or on its own, when it does all of that itself first (so every
// write from then on reaches the target through reconciliation). Splits the key space into
// partitions and copies them as child workflows, hot rows first when a predicate is given. Carries
// key ranges and counters only, never rows. Pause, resume and throttle signals are passed on to the
// partitions. While copying, a brake follows the application's latency (model/latency-throttle.ts):
// measured once before the copy starts, then every few seconds; the copy keeps to the lower of its
// limit and the operator's.
import {
  ActivityFailure,
  ParentClosePolicy,
  condition,
  getExternalWorkflowHandle,
  log,
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
  backfillCopiedSignal,
  backfillProgressQuery,
  partitionCopiedSignal,
  pauseSignal,
  resumeSignal,
  throttleSignal,
  tuneSignal,
} from './messages';
import { PROGRESS_REPORT_MS, type BackfillProgress, type PartitionReport } from '../model/messages';
import { MIGRATION_NAME, MIGRATION_PHASE, MIGRATION_ROWS_COPIED, MIGRATION_TABLE } from './search-attributes';
import {
  DEFAULT_LATENCY_TARGET,
  effectiveRowLimit,
  nextLatencyThrottle,
  startLatencyThrottle,
  latencyBrakeSwitchedOff,
  type LatencyTarget,
} from '../model/latency-throttle';
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
  /** A Citus target: the column the table is (or, created, will be) distributed by on new. */
  distributionColumn?: string;
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
// A reading takes milliseconds; one that fails is skipped (the copy goes on at its current limit).
const { measureApplicationLatency } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  heartbeatTimeout: '15 seconds',
  retry: { maximumInterval: '5 seconds', maximumAttempts: 3 },
});

/** How often, at most, a backfill tells its migration how far it got, in ms. */
const PARENT_REPORT_MS = 15_000;

/** Runs started before the brake copy without it: their histories replay unchanged. */
const LATENCY_BRAKE = 'latency-brake';
/**
 * Runs started before the brake's second version replay unchanged: it cuts by the overshoot and
 * takes the copy's rate from its partitions' reports (model/latency-throttle.ts); the first halved,
 * from rows counted between readings.
 */
const LATENCY_BRAKE_2 = 'latency-brake-2';
/** Runs started before a baseline that could not be read left the copy without the brake failed with it. */
const LATENCY_BASELINE_UNREAD = 'latency-baseline-unread';
/**
 * Runs started before took their first reading one interval into the copy. The copy hurts most in
 * its first seconds, before any cut: the brake now reads first after FIRST_READING_MS (over that
 * window), and each partition starts with small batches that grow (backfill-partition.ts), so a cut
 * reaches the copy in a few seconds rather than after every batch already in flight.
 */
const BRAKE_READS_SOONER = 'brake-reads-sooner';
/**
 * Runs started before took the rate a first cut starts from as the partitions reported it, which over
 * a first small batch can exceed the operator's row limit: a cut from 4,164 rows/s under a limit of
 * 4,000 left the copy at 2,082, not half. The copy cannot keep to more than the operator's limit.
 */
const BRAKE_CUTS_WITHIN_ROW_LIMIT = 'brake-cuts-within-row-limit';
/**
 * Runs started before started every copy at full speed: a large table whose application is busy now
 * starts slowly, its limit doubled at each calm reading (model/latency-throttle.ts).
 */
const BRAKE_SLOW_START = 'brake-slow-start';
/** When the brake first reads the application's latency after the copy starts, in ms (at most an interval). */
const FIRST_READING_MS = 1000;
/**
 * While the brake is off and the application calm, readings come ever less often, up to this many
 * intervals apart: a reading costs the table workflow's history about ten events, and a copy of a
 * billion rows runs for hours. A reading that is not calm brings the interval back at once.
 */
const MAX_INTERVALS_BETWEEN_CALM_READINGS = 12;
/**
 * Past this many events in the table workflow's history the brake stops reading (the copy keeps
 * the limit it has; the operator's `migrate throttle` still works): the workflow must stay well
 * under Temporal's hard limit of 51,200 events, whatever the copy's length.
 */
const BRAKE_HISTORY_LIMIT = 30_000;

/** The brake's settings for this backfill: the defaults under what the input sets; null when off. */
function latencyTarget(input: BackfillTableInput): LatencyTarget | null {
  const set = input.throttle?.latencyTarget;
  return set === null ? null : { ...DEFAULT_LATENCY_TARGET, ...set };
}

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
  /** The limit the copy keeps: the operator's, or the brake's when lower. */
  const rowLimit = () => effectiveRowLimit(progress.maxRowsPerSecond, progress.latency?.limit ?? null);
  const share = () => {
    const limit = rowLimit();
    return limit === null ? null : limit / partitionsInPass;
  };
  const tell = (send: (child: ChildWorkflowHandle<typeof backfillPartitionWorkflow>) => Promise<void>) => {
    // A partition that just finished no longer takes signals; nothing is lost.
    for (const child of running.values()) void send(child).catch(() => undefined);
  };
  /** Gives every running partition its share of the limit as it is now. */
  const tellShares = () => {
    const perPartition = share();
    tell((child) => child.signal(throttleSignal, { maxRowsPerSecond: perPartition }));
  };
  // What running partitions reported (partitionCopiedSignal), shown every few seconds at most.
  const reported = new Map<string, PartitionReport>();
  let copyingSince: number | null = null;
  let shownAt = 0;
  let toldParentAt = 0;
  const rowsCopiedNow = () =>
    progress.finished.rowsCopied + [...reported.values()].reduce((n, r) => n + r.rowsCopied, 0);
  // Each running partition's recent rate, for the brake: rows/s between its last two reports (its
  // first: since it started); null until it has reported once.
  const partitionRates = new Map<string, { rows: number; at: number; rowsPerSecond: number | null }>();
  /** The table's copy rate by its partitions' latest reports; null when none has reported yet. */
  const reportedRate = (): number | null => {
    const known = [...partitionRates.values()].filter((rate) => rate.rowsPerSecond !== null);
    return known.length === 0 ? null : known.reduce((sum, rate) => sum + rate.rowsPerSecond!, 0);
  };
  const showProgress = () => {
    const rows = rowsCopiedNow();
    const seconds = copyingSince === null ? 0 : (Date.now() - copyingSince) / 1000;
    const rate = seconds > 0 ? Math.round(rows / seconds) : 0;
    const left = Math.max(0, progress.estimatedRows - rows);
    const percent =
      progress.estimatedRows > 0 ? Math.min(100, Math.round((rows / progress.estimatedRows) * 100)) : null;
    const waiting = [
      ...new Set([...reported.values()].flatMap((r) => (r.waitingFor === null ? [] : [r.waitingFor]))),
    ];
    upsertSearchAttributes([{ key: MIGRATION_ROWS_COPIED, value: rows }]);
    // The worker log's progress line: one every few seconds per table, whatever the chunk count.
    log.info('backfill progress', {
      rowsCopied: rows,
      estimatedRows: progress.estimatedRows,
      percent,
      rowsPerSecond: rate,
      etaSeconds: rate > 0 ? Math.round(left / rate) : null,
      ...(waiting.length > 0 && { waitingFor: waiting }),
    });
    const brake = progress.latency?.limit != null ? `; brake: ${progress.latency.reason}` : '';
    setCurrentDetails(
      `${tableName}: ${rows} of ~${progress.estimatedRows} rows${percent !== null ? ` (${percent}%)` : ''}, ${rate} rows/s, ETA ${rate > 0 ? `${Math.round(left / rate)} s` : 'unknown'}; ${progress.phase}${progress.paused ? ' (paused)' : ''}${waiting.length > 0 ? `; throttled: ${waiting.join('; ')}` : ''}${brake}`,
    );
    // The migration running this backfill shows the figures in its own current details; every
    // PARENT_REPORT_MS at most, so its history grows slowly however long the copy takes.
    const parent = workflowInfo().parent?.workflowId;
    if (
      parent !== undefined &&
      Date.now() - toldParentAt >= PARENT_REPORT_MS &&
      patched('progress-to-migration')
    ) {
      toldParentAt = Date.now();
      void getExternalWorkflowHandle(parent)
        .signal(backfillCopiedSignal, {
          table: tableName,
          rowsCopied: rows,
          estimatedRows: progress.estimatedRows,
          rowsPerSecond: rate,
          waitingFor:
            progress.latency?.limit != null ? [...waiting, `brake: ${progress.latency.reason}`] : waiting,
        })
        .catch(() => undefined);
    }
  };
  setHandler(partitionCopiedSignal, (report) => {
    if (!running.has(report.workflowId)) return;
    reported.set(report.workflowId, report);
    const before = partitionRates.get(report.workflowId);
    if (before !== undefined) {
      const seconds = Math.max(0.001, (Date.now() - before.at) / 1000);
      partitionRates.set(report.workflowId, {
        rows: report.rowsCopied,
        at: Date.now(),
        rowsPerSecond: Math.max(0, report.rowsCopied - before.rows) / seconds,
      });
    }
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
    tellShares();
  });
  // The operator's latency target and nice ratio (`migrate throttle`), for this copy from now on.
  const target = latencyTarget(input);
  let brakeOff = false;
  let niceRatio = input.throttle?.niceRatio;
  setHandler(tuneSignal, ({ latencyRatio, niceRatio: nice }) => {
    if (nice !== undefined) {
      niceRatio = nice;
      tell((child) => child.signal(tuneSignal, { niceRatio: nice }));
    }
    if (latencyRatio === undefined) return;
    if (target !== null && latencyRatio !== null) target.ratio = latencyRatio;
    brakeOff = latencyRatio === null;
    if (progress.latency === undefined) return;
    const braking = progress.latency.limit !== null;
    progress.latency = brakeOff
      ? latencyBrakeSwitchedOff(progress.latency)
      : { ...progress.latency, target: { ...progress.latency.target, ratio: latencyRatio! } };
    if (braking && brakeOff) tellShares();
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
          // Only when set: the activity's input stays as it was for every run without one.
          ...(input.distributionColumn !== undefined && { distributionColumn: input.distributionColumn }),
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

  // The brake: a baseline reading before the first row moves, then a reading every interval while
  // copying (none while paused); a change of its limit goes to every partition at once.
  let copying = true;
  let braking: Promise<void> = Promise.resolve();
  const measure = (windowMs = target!.intervalMs) =>
    measureApplicationLatency({
      migration: input.migration,
      servers,
      source: input.source,
      probeQuery: target!.probeQuery,
      minSamples: target!.minSamples,
      windowMs,
    });
  const brake = async () => {
    let rows = rowsCopiedNow();
    let at = Date.now();
    let intervals = 1;
    // The first wait (and the first reading's window), when sooner than an interval.
    let firstMs = patched(BRAKE_READS_SOONER) ? Math.min(FIRST_READING_MS, target!.intervalMs) : undefined;
    for (;;) {
      const windowMs = firstMs;
      firstMs = undefined;
      if (await condition(() => !copying, windowMs ?? target!.intervalMs * intervals)) break;
      if (progress.paused || brakeOff) continue;
      if (workflowInfo().historyLength > BRAKE_HISTORY_LIMIT) {
        log.warn('the latency brake stops reading: the table workflow history is long', {
          historyLength: workflowInfo().historyLength,
          limit: progress.latency!.limit,
        });
        return;
      }
      let reading;
      try {
        reading = await measure(windowMs);
      } catch (err) {
        log.warn('could not read the application latency; the copy keeps its limit', {
          error: (err as Error).message,
        });
        continue;
      }
      const seconds = Math.max(0.001, (Date.now() - at) / 1000);
      const copied = rowsCopiedNow();
      // Partitions report every few seconds: rows counted between two readings missed what the
      // partitions copied since their last report (at the first reading, often everything), and a
      // brake that halved from that rate limited the copy to its floor and lifted the limit at its
      // first step up. Their own rates between reports are what the copy runs at.
      const measuredRate =
        progress.latency!.cut === 'by-overshoot' ? reportedRate() : (copied - rows) / seconds;
      const rate =
        measuredRate !== null &&
        progress.maxRowsPerSecond !== null &&
        measuredRate > progress.maxRowsPerSecond &&
        patched(BRAKE_CUTS_WITHIN_ROW_LIMIT)
          ? progress.maxRowsPerSecond
          : measuredRate;
      rows = copied;
      at = Date.now();
      const before = progress.latency!.limit;
      progress.latency = nextLatencyThrottle(progress.latency!, reading, rate);
      if (progress.latency.limit !== before) {
        log.info('copy brake', { reason: progress.latency.reason, limit: progress.latency.limit });
        tellShares();
      }
      const last = progress.latency.last!;
      const calm =
        progress.latency.limit === null && (last.applicationIdle === true || last.ms <= last.targetMs * 0.8);
      intervals = calm ? Math.min(intervals * 2, MAX_INTERVALS_BETWEEN_CALM_READINGS) : 1;
    }
  };
  const startBrake = async () => {
    if (target === null || progress.latency !== undefined || !patched(LATENCY_BRAKE)) return;
    const cut = patched(LATENCY_BRAKE_2) ? 'by-overshoot' : 'half';
    let baseline;
    try {
      baseline = await measure();
    } catch (err) {
      // A probe query that cannot run (a table it names is missing, a grant) must not fail the copy:
      // it runs without the brake, and says so; the next pass tries again.
      if (!patched(LATENCY_BASELINE_UNREAD)) throw err;
      const cause = err instanceof ActivityFailure && err.cause !== undefined ? err.cause : err;
      progress.latencyUnread = `could not read the application's latency before the copy (${(cause as Error).message}): copying without the latency brake`;
      log.warn('copy brake', { reason: progress.latencyUnread });
      return;
    }
    delete progress.latencyUnread;
    const table = patched(BRAKE_SLOW_START) ? { estimatedRows: progress.estimatedRows } : undefined;
    progress.latency = startLatencyThrottle(target, baseline, cut, table);
    if (progress.latency.limit !== null) {
      log.info('copy brake', { reason: progress.latency.reason, limit: progress.latency.limit });
    }
    braking = brake();
  };

  const copy = async (pass: 'hot' | 'main', ranges: KeyRange[], predicate?: string) => {
    await startBrake();
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
              ...(niceRatio !== input.throttle?.niceRatio && { throttle: { ...input.throttle, niceRatio } }),
              maxRowsPerSecond: startedRate,
              paused: startedPaused,
            },
          ],
        });
        // Listed once it exists, so whoever queries the list can query the partition.
        progress.partitions.push({ workflowId, pass, range, done: false });
        running.set(workflowId, child);
        partitionRates.set(workflowId, { rows: 0, at: Date.now(), rowsPerSecond: null });
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
        partitionRates.delete(child.workflowId);
        partitionsInPass = Math.max(1, partitionsInPass - 1);
        if (rowLimit() !== null && running.size > 0 && patched('row-limit-shared-by-running-partitions')) {
          tellShares();
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
    copying = false;
    await braking;
  }
  progress.phase = 'done';
  upsertSearchAttributes([
    { key: MIGRATION_PHASE, value: 'backfill-done' },
    { key: MIGRATION_ROWS_COPIED, value: progress.finished.rowsCopied },
  ]);
  return { ...progress.finished };
}
