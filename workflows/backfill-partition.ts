// One partition of a table's backfill: a key range copied in fixed chunks, with a bounded number of
// chunk activities in flight (each copies a few consecutive chunks, one transaction and marker
// each). Chunk bounds come from walking the key index ahead of the copy, so chunks can run side by
// side; each chunk commits its rows and its done-marker together. Continues as new when the history
// grows, carrying only the key it reached and counters.
// A failure that retrying cannot heal (a schema change, the wrong servers, a constraint the target
// enforces) does not throw away the partition's progress: the partition tells its migration, which
// holds with the cause, waits for `resume`, and then copies the failed chunks again (chunks already
// committed are skipped by their markers). Run on its own, with no migration to tell, it fails.
import {
  ActivityFailure,
  ApplicationFailure,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { CopyChunksResult } from '../activities/copier';
import type { TableRef } from '../model/tables';
import type { KeyRange } from '../model/tables';
import type { ServerBinding } from '../model/servers';
import type { ConnectionName } from '../model/connections';
import { migrationWorkflowId } from '../model/ids';
import {
  backfillTroubleSignal,
  partitionCopiedSignal,
  partitionProgressQuery,
  pauseSignal,
  resumeSignal,
  throttleSignal,
  tuneSignal,
} from './messages';
import { PROGRESS_REPORT_MS, type PartitionProgress } from '../model/messages';
import { MIGRATION_NAME, MIGRATION_PHASE, MIGRATION_ROWS_COPIED, MIGRATION_TABLE } from './search-attributes';
import { ThrottleGate } from './throttle';
import type { ThrottleSettings } from '../model/throttle-settings';

export interface BackfillPartitionInput {
  migration: string;
  servers: ServerBinding;
  source: ConnectionName;
  target: ConnectionName;
  table: TableRef;
  pass: 'hot' | 'main';
  range: KeyRange;
  /** Hot-rows pass: copy only rows matching this condition. */
  predicate?: string;
  chunkSize: number;
  chunksInFlight: number;
  /** Consecutive chunks one activity copies (each still committed and marked on its own). */
  chunksPerActivity: number;
  throttle?: ThrottleSettings;
  /** This partition's share of the table's row rate limit; null = unlimited. */
  maxRowsPerSecond: number | null;
  paused: boolean;
  /** Carried across continue-as-new: everything up to `reached` is copied. */
  resume?: {
    reached: string[] | null;
    rowsCopied: number;
    rowsRead: number;
    chunksDone: number;
    startedAt: number;
    throttled: Record<string, number>;
    runs: number;
  };
}

export interface BackfillPartitionResult {
  rowsCopied: number;
  rowsRead: number;
  chunksDone: number;
}

/** Chunk bounds fetched per walk of the key index, as a multiple of the chunks in flight. */
const LOOKAHEAD_PER_SLOT = 8;

/**
 * Runs started before began with whole batches (and a walk of the key index ahead of them as long
 * as for whole batches), and first told their table workflow how far they got after
 * PROGRESS_REPORT_MS. Since, a fresh partition's batches start at one chunk and double up to
 * chunksPerActivity, its walk ahead grows with them, and it reports after its first batch: the
 * latency brake learns the copy's rate at once, and its first cut is not stuck behind whole batches
 * already in flight.
 */
const SMALL_FIRST_BATCHES = 'small-first-batches';
/**
 * Runs started before dispatched a batch whose walk of the key index a pause overtook (the walk is
 * an activity). Since, that batch waits for the resume: nothing new starts once a pause arrived.
 */
const NO_DISPATCH_AFTER_PAUSE = 'no-dispatch-after-pause';
/**
 * Runs started before looked at the source's health with an activity of its own (checkSourceHealth)
 * before a batch, about once a second. Since, the batch's copyChunks looks first and copies nothing
 * while the source hurts: one activity fewer per batch, which under a row limit (batches of a chunk
 * or two) was half of the copy's activities.
 */
const LOOK_IN_BATCH = 'source-look-in-batch';

const { findChunkBounds } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '15 seconds',
  retry: { maximumInterval: '30 seconds' },
});
const { copyChunks } = proxyActivities<Activities>({
  startToCloseTimeout: '10 minutes',
  // Every activity heartbeats at least every 2 s (withHeartbeats); a dead worker's chunks are retried this soon.
  heartbeatTimeout: '10 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
  // Through the task queue, to whichever worker has a free slot: an eagerly dispatched batch runs on
  // the worker that ran the partition's workflow task, which stays the same while it is cached
  // there, so a partition's whole copy stayed on one worker however many shared the task queue.
  allowEagerDispatch: false,
});

export async function backfillPartitionWorkflow(
  input: BackfillPartitionInput,
): Promise<BackfillPartitionResult> {
  const tableName = `${input.table.schema}.${input.table.table}`;
  const info = workflowInfo();
  const progress: PartitionProgress = {
    workflowId: info.workflowId,
    pass: input.pass,
    range: input.range,
    rowsCopied: input.resume?.rowsCopied ?? 0,
    rowsRead: input.resume?.rowsRead ?? 0,
    chunksDone: input.resume?.chunksDone ?? 0,
    chunksInFlight: 0,
    chunksDispatched: input.resume?.chunksDone ?? 0,
    chunksDispatchedWhenPaused: input.paused ? (input.resume?.chunksDone ?? 0) : null,
    startedAt: input.resume?.startedAt ?? Date.now(),
    updatedAt: Date.now(),
    paused: input.paused,
    waitingFor: null,
    failure: null,
    throttled: input.resume?.throttled ?? {},
    done: false,
    runs: (input.resume?.runs ?? 0) + 1,
  };
  const gate = new ThrottleGate(input.source, input.throttle, input.maxRowsPerSecond, progress.throttled);
  if (patched(LOOK_IN_BATCH)) gate.lookInBatches();
  setHandler(partitionProgressQuery, () => ({
    ...progress,
    waitingFor:
      progress.failure !== null ? `held: ${progress.failure}` : progress.paused ? 'paused' : gate.waitingFor,
  }));
  setHandler(pauseSignal, () => {
    progress.paused = true;
    progress.chunksDispatchedWhenPaused = progress.chunksDispatched;
  });
  setHandler(resumeSignal, () => {
    progress.paused = false;
    progress.failure = null;
  });
  setHandler(throttleSignal, ({ maxRowsPerSecond }) => gate.setRate(maxRowsPerSecond));
  setHandler(tuneSignal, ({ niceRatio }) => {
    if (niceRatio !== undefined) gate.setNice(niceRatio);
  });
  upsertSearchAttributes([
    { key: MIGRATION_NAME, value: input.migration },
    { key: MIGRATION_TABLE, value: tableName },
    { key: MIGRATION_PHASE, value: input.pass === 'hot' ? 'backfill-hot-rows' : 'backfill' },
  ]);

  // Chunk upper bounds found but not started yet, and where the next walk of the index begins.
  const pending: string[][] = [];
  let walkedTo = input.resume?.reached ?? input.range.lower;
  let walkedToEnd = false;
  // Every chunk up to `dispatchedTo` has started; `reached` moves when all of them have finished.
  let dispatchedTo = walkedTo;
  const inFlight = new Set<Promise<void>>();
  let failure: Error | undefined;
  /**
   * Chunk batches that failed for good, copied again first once the operator resumes; and a batch
   * whose walk a pause overtook, which waits for the resume.
   */
  const retry: KeyRange[][] = [];

  async function nextChunks(size: number): Promise<KeyRange[]> {
    const batch: KeyRange[] = [];
    try {
      while (batch.length < size) {
        const range = await nextChunk();
        if (range === null) break;
        batch.push(range);
      }
    } catch (err) {
      // The chunks taken so far are handed out already (dispatchedTo moved past them): keep them.
      if (batch.length > 0) retry.push(batch);
      throw err;
    }
    return batch;
  }

  async function nextChunk(): Promise<KeyRange | null> {
    if (pending.length === 0 && !walkedToEnd) {
      // While batches grow, so does the walk ahead of them: a fresh partition does not walk its
      // whole range on the application's database in its first second.
      const count = input.chunksInFlight * (growingBatch ?? input.chunksPerActivity) * LOOKAHEAD_PER_SLOT;
      const bounds = await findChunkBounds({
        migration: input.migration,
        servers: input.servers,
        connection: input.source,
        table: input.table,
        range: { lower: walkedTo, upper: input.range.upper },
        chunkSize: input.chunkSize,
        count,
        ...(input.predicate !== undefined && { predicate: input.predicate }),
      });
      pending.push(...bounds);
      if (bounds.length < count) {
        // The rest of the range is less than one chunk: it ends at the range's upper key.
        walkedToEnd = true;
        const last = bounds[bounds.length - 1];
        if (last === undefined || JSON.stringify(last) !== JSON.stringify(input.range.upper)) {
          pending.push(input.range.upper);
        }
      }
      walkedTo = bounds[bounds.length - 1] ?? walkedTo;
    }
    const upper = pending.shift();
    if (upper === undefined) return null;
    const chunk = { lower: dispatchedTo, upper };
    dispatchedTo = upper;
    return chunk;
  }

  /** The next batch's chunks while batches still grow (a fresh partition's first ones); then undefined. */
  let growingBatch = input.resume === undefined && patched(SMALL_FIRST_BATCHES) ? 1 : undefined;
  let reportedOnce = growingBatch === undefined;
  let reportedAt = Date.now();
  function record(result: CopyChunksResult): void {
    progress.rowsCopied += result.rowsCopied;
    progress.rowsRead += result.rowsRead;
    progress.chunksDone += result.chunks;
    progress.updatedAt = Date.now();
    // Rows copied for the Web UI and the table while copying: after the first batch, then every few
    // seconds, never every chunk.
    if (
      (!reportedOnce || Date.now() - reportedAt >= PROGRESS_REPORT_MS) &&
      patched('progress-while-copying')
    ) {
      reportedOnce = true;
      reportedAt = Date.now();
      upsertSearchAttributes([{ key: MIGRATION_ROWS_COPIED, value: progress.rowsCopied }]);
      const parent = info.parent?.workflowId;
      if (parent !== undefined) {
        void getExternalWorkflowHandle(parent)
          .signal(partitionCopiedSignal, {
            workflowId: info.workflowId,
            rowsCopied: progress.rowsCopied,
            chunksDone: progress.chunksDone,
            waitingFor: gate.waitingFor,
          })
          .catch(() => undefined);
      }
    }
  }

  /**
   * Tells the migration about `err` and waits for `resume`; rethrows it when there is no migration
   * to tell (a backfill run on its own).
   */
  async function holdFor(err: Error): Promise<void> {
    const cause = err instanceof ActivityFailure && err.cause !== undefined ? err.cause : err;
    const code = cause instanceof ApplicationFailure ? (cause.type ?? null) : null;
    const told = await getExternalWorkflowHandle(migrationWorkflowId(input.migration))
      .signal(backfillTroubleSignal, {
        workflowId: info.workflowId,
        table: tableName,
        message: cause.message,
        code,
      })
      .then(
        () => true,
        () => false,
      );
    if (!told) throw err;
    progress.failure = cause.message;
    progress.paused = true;
    progress.chunksDispatchedWhenPaused = progress.chunksDispatched;
    setCurrentDetails(`${tableName} ${input.pass} partition: held until resume: ${cause.message}`);
    await condition(() => !progress.paused);
  }

  for (;;) {
    if (failure !== undefined) {
      await Promise.all(inFlight);
      const held = failure;
      failure = undefined;
      await holdFor(held);
      continue;
    }
    // Every way out waits for the chunks in flight: one of them may still fail and need a retry.
    const settled = async () => {
      await Promise.all(inFlight);
      return failure === undefined && retry.length === 0;
    };
    if (retry.length === 0 && workflowInfo().continueAsNewSuggested) {
      if (await settled()) break;
      continue;
    }
    await condition(() => !progress.paused);
    // Under a row limit a batch is about a second of it (a smaller burst); a failed batch goes again whole.
    const whole = gate.chunksPerBatch(input.chunkSize, input.chunksPerActivity);
    const size = retry[0]?.length ?? (growingBatch === undefined ? whole : Math.min(whole, growingBatch));
    const taken = input.chunkSize * size;
    await gate.beforeChunk(taken, () => progress.paused);
    if (progress.paused) continue;
    let ranges: KeyRange[];
    try {
      ranges = retry.shift() ?? (await nextChunks(size));
    } catch (err) {
      failure = err instanceof Error ? err : new Error(String(err));
      continue;
    }
    if (ranges.length === 0) {
      if (await settled()) break;
      continue;
    }
    if (progress.paused && patched(NO_DISPATCH_AFTER_PAUSE)) {
      // The pause came while the key index was walked: these chunks wait, and go first on resume.
      retry.unshift(ranges);
      continue;
    }
    progress.chunksDispatched += ranges.length;
    if (growingBatch !== undefined) {
      growingBatch = growingBatch * 2 >= input.chunksPerActivity ? undefined : growingBatch * 2;
    }
    const batch = ranges;
    const batchStarted = Date.now();
    const lookAtSource = gate.batchLook();
    const copying = copyChunks({
      migration: input.migration,
      servers: input.servers,
      source: input.source,
      target: input.target,
      table: input.table,
      ranges: batch,
      ...(input.predicate !== undefined && { predicate: input.predicate }),
      ...(lookAtSource !== undefined && { lookAtSource }),
    }).then(
      (result) => {
        const hurting = result.source?.reason ?? null;
        gate.looked(hurting);
        if (hurting !== null) {
          // The source hurts: the batch copied nothing and goes again first, once the gate lets it.
          gate.afterBatch(taken, 0);
          retry.unshift(batch);
          progress.chunksDispatched -= batch.length;
          return;
        }
        gate.afterBatch(taken, result.rowsRead);
        gate.batchTook(Date.now() - batchStarted);
        record(result);
      },
      (err: unknown) => {
        retry.push(batch);
        progress.chunksDispatched -= batch.length;
        failure ??= err instanceof Error ? err : new Error(String(err));
      },
    );
    const tracked = copying.finally(() => {
      inFlight.delete(tracked);
      progress.chunksInFlight = inFlight.size;
    });
    inFlight.add(tracked);
    progress.chunksInFlight = inFlight.size;
    if (inFlight.size >= input.chunksInFlight) await Promise.race(inFlight);
    setCurrentDetails(
      `${tableName} ${input.pass} partition: ${progress.rowsCopied} rows copied in ${progress.chunksDone} chunks${
        gate.waitingFor !== null ? `; throttled: ${gate.waitingFor}` : ''
      }`,
    );
  }
  upsertSearchAttributes([{ key: MIGRATION_ROWS_COPIED, value: progress.rowsCopied }]);
  if (pending.length > 0 || !walkedToEnd) {
    // Stopped early for continue-as-new: everything dispatched has finished, so resume after it.
    await continueAsNew<typeof backfillPartitionWorkflow>({
      ...input,
      ...(gate.nice !== (input.throttle?.niceRatio ?? 0) && {
        throttle: { ...input.throttle, niceRatio: gate.nice },
      }),
      maxRowsPerSecond: gate.rateLimit,
      paused: progress.paused,
      resume: {
        reached: dispatchedTo,
        rowsCopied: progress.rowsCopied,
        rowsRead: progress.rowsRead,
        chunksDone: progress.chunksDone,
        startedAt: progress.startedAt,
        throttled: progress.throttled,
        runs: progress.runs,
      },
    });
  }
  progress.done = true;
  setCurrentDetails(`${tableName} ${input.pass} partition done: ${progress.rowsCopied} rows copied`);
  return { rowsCopied: progress.rowsCopied, rowsRead: progress.rowsRead, chunksDone: progress.chunksDone };
}
