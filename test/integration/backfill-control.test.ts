// Operating a running backfill: pause and resume (no new chunk starts once paused; chunks in flight
// finish), the operator's row rate throttle, a throttle from the source's health with its reason,
// progress with rate and ETA, and hot rows copied before the rest. A busy source holds every batch,
// looked at by the copy's own activity, and the copy finishes exact once it calms down.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { CopyChunkInput } from '../../activities/copier';
import type { TableRef } from '../../model/tables';
import { compareTables } from '../../db/verifier';
import { readBackfillProgress, type BackfillReport } from '../../client/backfill-progress';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { backfillTableWorkflow } from '../../workflows';
import { pauseSignal, resumeSignal, throttleSignal } from '../../workflows/messages';
import { backfillInput, startRunningWorker } from '../harness/backfill';
import { waitFor } from '../harness/wait';
import { databasePools, installQuietRuntime, servers } from '../harness/servers';

installQuietRuntime();

describe('controlling a running backfill', () => {
  const pools = databasePools();
  const suffix = randomUUID().slice(0, 8);
  const chunkOrder: CopyChunkInput[] = [];
  let testWorker: Awaited<ReturnType<typeof startRunningWorker>>;

  before(async () => {
    testWorker = await startRunningWorker('control', {
      copierHooks: {
        afterChunkCommitted: (chunk) => {
          if (chunk.table.table.startsWith('hot_')) chunkOrder.push(chunk);
        },
      },
    });
  });

  after(async () => {
    await testWorker.stop();
    await pools.end();
  });

  async function seeded(prefix: string, rows: number): Promise<TableRef> {
    const table = { schema: 'public', table: `${prefix}_${suffix}` };
    await pools.old.query(sampleTableDdl(table));
    await pools.new.query(sampleTableDdl(table));
    await seedSampleRows(pools.old, table, rows);
    await pools.old.query(`ANALYZE ${table.schema}.${table.table}`);
    return table;
  }

  it('pauses (nothing new starts), reports progress and the throttle reason, resumes and finishes exact', async () => {
    const table = await seeded('paused', 20_000);
    const partitions = 2;
    const chunksInFlight = 2;
    const chunksPerActivity = 2;
    const handle = await testWorker.client.workflow.start(backfillTableWorkflow, {
      taskQueue: testWorker.taskQueue,
      workflowId: `backfill-paused-${suffix}`,
      args: [
        backfillInput(table, 100, {
          partitions,
          chunksInFlight,
          chunksPerActivity,
          throttle: { maxRowsPerSecond: 4000 },
        }),
      ],
    });
    const progress = () => readBackfillProgress(testWorker.client, handle.workflowId);
    const moving = await waitFor('some chunks', progress, (p) => p.chunksDone >= 6);
    assert.equal(moving.estimatedRows, 20_000);
    assert.ok(moving.rowsPerSecond > 0, 'a rate');
    assert.notEqual(moving.etaSeconds, null, 'an ETA');

    const beforePause = await progress();
    await handle.signal(pauseSignal);
    const paused = await waitFor(
      'every partition paused with nothing in flight',
      progress,
      (p: BackfillReport) => p.partitions.every((part) => part.paused) && p.chunksInFlight === 0,
    );
    // Chunks already handed to activities finish; none is handed out after the pause arrived.
    for (const partition of paused.partitions) {
      assert.equal(partition.chunksDone, partition.chunksDispatchedWhenPaused, partition.workflowId);
    }
    assert.ok(paused.chunksDone >= beforePause.chunksDone);
    assert.deepEqual(paused.waitingFor, ['paused']);
    // Paused means paused: a while later, still the same chunks.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const still = await progress();
    assert.equal(still.chunksDone, paused.chunksDone);
    assert.equal(still.phase, 'copying');

    await handle.signal(throttleSignal, { maxRowsPerSecond: 400 });
    await handle.signal(resumeSignal);
    const throttled = await waitFor('the rate limit to show', progress, (p) =>
      p.waitingFor.some((reason) => /row rate limit 200 rows\/s/.test(reason)),
    );
    assert.ok(throttled.partitions.some((part) => (part.throttled.rate ?? 0) > 0));
    await handle.signal(throttleSignal, { maxRowsPerSecond: null });
    const result = await handle.result();
    assert.equal(result.rowsCopied, 20_000);
    const done = await progress();
    assert.equal(done.etaSeconds, 0);
    const comparison = await compareTables(pools.old, pools.new, table, ['id']);
    assert.deepEqual(comparison.differences, []);
  });

  it('a pause and a resume sent while the partitions start still reach every partition', async () => {
    const table = await seeded('quick', 3000);
    const handle = await testWorker.client.workflow.start(backfillTableWorkflow, {
      taskQueue: testWorker.taskQueue,
      workflowId: `backfill-quick-${suffix}`,
      args: [backfillInput(table, 100, { partitions: 2 })],
    });
    await handle.signal(pauseSignal);
    await handle.signal(resumeSignal);
    await handle.signal(pauseSignal);
    await handle.signal(resumeSignal);
    const result = await handle.result();
    assert.equal(result.rowsCopied, 3000);
  });

  it('waits while the source is hurting and says why', async () => {
    const table = await seeded('hurting', 500);
    const handle = await testWorker.client.workflow.start(backfillTableWorkflow, {
      taskQueue: testWorker.taskQueue,
      workflowId: `backfill-hurting-${suffix}`,
      // A probe can never answer in 0 ms: the source always looks busy.
      args: [backfillInput(table, 100, { throttle: { maxProbeLatencyMs: 0, backoffMs: 200 } })],
    });
    try {
      const waiting = await waitFor(
        'the throttle reason',
        () => readBackfillProgress(testWorker.client, handle.workflowId),
        (p) => p.waitingFor.length > 0,
      );
      assert.match(waiting.waitingFor[0] ?? '', /^source latency probe [\d.]+ ms > 0 ms$/);
      assert.equal(waiting.chunksDone, 0);
    } finally {
      await handle.terminate('test done');
    }
  });

  it('holds every batch while an application session is busy on old, then copies every row once, looking from the copy activity itself', async () => {
    const table = await seeded('busy', 3000);
    const blocker = `public.busy_blocker_${suffix}`;
    await pools.old.query(`CREATE TABLE ${blocker} (id int)`);
    // The application's session waits on a lock the test holds: active on old until it lets go.
    const holder = await pools.old.connect();
    const application = new pg.Client({
      connectionString: servers.oldUrl,
      application_name: 'the application',
    });
    await application.connect();
    let released = false;
    const release = async () => {
      if (released) return;
      released = true;
      await holder.query('COMMIT');
      holder.release();
    };
    try {
      await holder.query(`BEGIN; LOCK TABLE ${blocker} IN ACCESS EXCLUSIVE MODE`);
      const waiting = application.query(`SELECT count(*) FROM ${blocker}`);
      // Awaited once the test lets go; a failure before that ends the session under it.
      waiting.catch(() => undefined);
      await waitFor(
        'the application session to wait on old',
        async () =>
          (
            await pools.old.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'the application' AND state = 'active'`,
            )
          ).rows[0]?.n ?? 0,
        (n) => n === 1,
      );
      const handle = await testWorker.client.workflow.start(backfillTableWorkflow, {
        taskQueue: testWorker.taskQueue,
        workflowId: `backfill-busy-${suffix}`,
        args: [
          backfillInput(table, 100, {
            partitions: 2,
            throttle: { maxActiveConnections: 0, checkIntervalMs: 200, backoffMs: 200 },
          }),
        ],
      });
      const progress = () => readBackfillProgress(testWorker.client, handle.workflowId);
      const held = await waitFor(
        'both partitions held by the busy source',
        progress,
        (p) => p.partitions.length === 2 && p.partitions.every((part) => (part.throttled.source ?? 0) >= 2),
      );
      assert.equal(held.chunksDone, 0, 'no chunk copied while the source is busy');
      assert.ok(held.waitingFor.some((reason) => /^source has \d+ active connections > 0$/.test(reason)));

      await release();
      await waiting;
      const result = await handle.result();
      assert.equal(result.rowsCopied, 3000);
      const comparison = await compareTables(pools.old, pools.new, table, ['id']);
      assert.deepEqual(comparison.differences, []);
      // The batches looked at old themselves: no activity of its own for the look.
      for (const partition of held.partitions) {
        const history = await testWorker.client.workflow.getHandle(partition.workflowId).fetchHistory();
        const scheduled = (history.events ?? []).map(
          (event) => event.activityTaskScheduledEventAttributes?.activityType?.name,
        );
        assert.ok(scheduled.includes('copyChunks'), partition.workflowId);
        assert.ok(!scheduled.includes('checkSourceHealth'), partition.workflowId);
      }
    } finally {
      await release();
      await application.end();
    }
  });

  it('copies hot rows before the rest', async () => {
    const table = await seeded('hot', 3000);
    const handle = await testWorker.client.workflow.start(backfillTableWorkflow, {
      taskQueue: testWorker.taskQueue,
      workflowId: `backfill-hot-${suffix}`,
      args: [backfillInput(table, 200, { hotRowsWhere: `status = 'paid'` })],
    });
    const result = await handle.result();
    assert.equal(result.rowsCopied, 3000);
    const firstMain = chunkOrder.findIndex((chunk) => chunk.predicate === undefined);
    const lastHot = chunkOrder.map((chunk) => chunk.predicate !== undefined).lastIndexOf(true);
    assert.ok(lastHot >= 0 && firstMain > lastHot, 'every hot chunk came before the first other chunk');
    const comparison = await compareTables(pools.old, pools.new, table, ['id']);
    assert.deepEqual(comparison.differences, []);
  });

  it('refuses a hot-rows condition that is not valid SQL for the table, before copying', async () => {
    const table = await seeded('badhot', 10);
    const handle = await testWorker.client.workflow.start(backfillTableWorkflow, {
      taskQueue: testWorker.taskQueue,
      workflowId: `backfill-badhot-${suffix}`,
      args: [backfillInput(table, 200, { hotRowsWhere: `no_such_column > 1) TO STDOUT; DROP TABLE x; --` })],
    });
    await assert.rejects(handle.result(), (err: Error) => {
      let cause: unknown = err;
      while (cause instanceof Error && cause.cause instanceof Error) cause = cause.cause;
      assert.match(
        (cause as Error).message,
        /hotRowsWhere for "public"."badhot_\w+" is not a valid condition/,
      );
      return true;
    });
    const copied = await pools.new.query(`SELECT 1 FROM public.badhot_${suffix}`);
    assert.equal(copied.rowCount, 0, 'nothing was copied');
    const capture = await pools.old.query(
      `SELECT 1 FROM pg_trigger WHERE tgrelid = 'public.badhot_${suffix}'::regclass AND NOT tgisinternal`,
    );
    assert.equal(capture.rowCount, 0, 'no capture trigger was installed');
  });
});
