// The brake that follows the application (issue 12, item 1), on real servers: a backfill whose
// application (one without a router) is timed by the operator's probe query. The probe is made slow
// on demand (an "application" table says so), standing for an application the copy hurts: the brake
// halves the copy's limit with its reason in the backfill's status and current details, the
// partitions wait for the row limit, and once the application is fast again the limit rises and is
// lifted; each partition started with batches of one chunk, then two, then four, so that a first cut
// is not stuck behind whole batches already in flight. The probe runs in the background and counts
// only while the application runs statements on old: once its writer stops, the limit is lifted
// though the probe is still slow. A writer on old keeps writing through the copy (in the second
// test, until it stops), and new equals old at the end.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import { compareTables } from '../../db/verifier';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { backfillTableWorkflow } from '../../workflows';
import { backfillProgressQuery } from '../../workflows/messages';
import { MESSAGE } from '../../model/messages';
import { readBackfillProgress } from '../../client/backfill-progress';
import { tableLines } from '../../client/live-status';
import pg from 'pg';
import { drainUntilEmpty, runActivity } from '../harness/activity';
import { backfillInput, runBackfill } from '../harness/backfill';
import { freshDatabases, withMigrationActivities } from '../harness/router';
import { waitFor } from '../harness/wait';
import { databasePools, servers, temporalClient } from '../harness/servers';
import { LATENCY_PROBES, MIN_RUNS } from '../../activities/latency-probes';
import { startWorkerProcess, type WorkerProcess } from '../harness/worker-process';
import type { LatencyTarget } from '../../model/latency-throttle';

/** The row rate a partition workflow started with, then each it was told (throttle signals), in order. */
async function partitionRates(client: Client, workflowId: string): Promise<Array<number | null>> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).flatMap((event) => {
    const started = event.workflowExecutionStartedEventAttributes;
    const signaled = event.workflowExecutionSignaledEventAttributes;
    const payload =
      started?.input?.payloads?.[0] ??
      (signaled?.signalName === MESSAGE.throttle ? signaled.input?.payloads?.[0] : undefined);
    if (payload === undefined) return [];
    return [
      defaultPayloadConverter.fromPayload<{ maxRowsPerSecond: number | null }>(payload).maxRowsPerSecond,
    ];
  });
}

/** The chunks of each copyChunks activity a partition workflow scheduled, in order. */
async function batchSizes(client: Client, workflowId: string): Promise<number[]> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).flatMap((event) => {
    const scheduled = event.activityTaskScheduledEventAttributes;
    if (scheduled?.activityType?.name !== 'copyChunks') return [];
    const [input] = (scheduled.input?.payloads ?? []).map((payload) =>
      defaultPayloadConverter.fromPayload<{ ranges: unknown[] }>(payload),
    );
    return [input?.ranges.length ?? 0];
  });
}

describe('the latency brake', () => {
  const pools = databasePools();
  const workers: WorkerProcess[] = [];
  const ends: Array<() => Promise<unknown>> = [];

  after(async () => {
    await Promise.all(workers.map((worker) => worker.kill('SIGKILL')));
    await Promise.all([pools.end(), ...ends.map((end) => end())]);
  });

  /**
   * A backfill of `rows` rows whose application is slow on demand (an "application" table says so),
   * with the application writing old directly (capture carries its writes) until `stopWriting`;
   * `finish` checks new equals old row by row. `slowness: 'probe'` makes the probe query slow;
   * `'statements'` keeps the probe fast and makes a query the application runs after each write slow,
   * in databases of their own whose old counts statements (pg_stat_statements).
   */
  async function brakedCopy(
    rows: number,
    slowness: 'probe' | 'statements' = 'probe',
    settings: { maxRowsPerSecond?: number | null; latencyTarget?: Partial<LatencyTarget> } = {},
  ) {
    const suffix = randomUUID().slice(0, 8);
    const table = { schema: 'public', table: `braked_${suffix}` };
    const health = `public.app_health_${suffix}`;
    const migration = `test-brake-${suffix}`;
    const own = slowness === 'statements' ? await freshDatabases('brake_statements') : undefined;
    if (own !== undefined) ends.push(own.end);
    const db = own?.pools ?? pools;
    const env = own?.env ?? process.env;
    if (own !== undefined) await db.old.query('CREATE EXTENSION pg_stat_statements');
    await db.old.query(sampleTableDdl(table));
    await db.new.query(sampleTableDdl(table));
    await seedSampleRows(db.old, table, rows);
    // The estimate slow start goes by is the planner's, as on a table autovacuum has analyzed.
    await db.old.query(`ANALYZE public.${table.table}`);
    await db.old.query(`CREATE TABLE ${health} (slow boolean NOT NULL)`);
    await db.old.query(`INSERT INTO ${health} VALUES (false)`);
    // The application's slow statements are far slower than the probe's: on a busy machine the
    // fast probe's p99 must not be further above its target than the statements' mean is.
    const slowSeconds = slowness === 'probe' ? 0.03 : 0.1;
    const slowQuery = `SELECT pg_sleep(CASE WHEN slow THEN ${slowSeconds} ELSE 0 END) FROM ${health}`;

    let writing = true;
    let written = 0;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await db.old.query(`UPDATE public.${table.table} SET note = $2 WHERE id = $1`, [
          1 + (i % 500),
          `write ${i}`,
        ]);
        if (slowness === 'statements') await db.old.query(slowQuery);
        written++;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    const stopWriting = async () => {
      writing = false;
      await writer;
      return written;
    };

    const taskQueue = `test-brake-${suffix}`;
    const worker = startWorkerProcess(
      taskQueue,
      own === undefined
        ? {}
        : { OLD_DATABASE_URL: own.migratorUrls.old, NEW_DATABASE_URL: own.migratorUrls.new },
    );
    workers.push(worker);
    const client = await temporalClient();
    const handle = await client.workflow.start(backfillTableWorkflow, {
      taskQueue,
      workflowId: `backfill-braked-${suffix}`,
      args: [
        backfillInput(table, 500, {
          migration,
          partitions: 2,
          chunksInFlight: 2,
          throttle: {
            // A slow copy to start with, so the brake has time to act before it ends.
            maxRowsPerSecond: settings.maxRowsPerSecond === undefined ? 4000 : settings.maxRowsPerSecond,
            latencyTarget: {
              intervalMs: 1000,
              minRowsPerSecond: 300,
              // The fast probe's p99 over a second (its slowest of about twenty runs) must be calm
              // on a busy test machine: a floor well above its hiccups, well below the slow probe.
              floorMs: 10,
              probeQuery: slowness === 'probe' ? slowQuery : 'SELECT 1',
              // Slowed down, the application runs about twenty statements a second.
              ...(slowness === 'statements' && { minSamples: 5 }),
              ...settings.latencyTarget,
            },
          },
        }),
      ],
    });
    const progress = () => handle.query(backfillProgressQuery);
    await waitFor('the baseline', async () => (await progress()).latency !== undefined);
    const started = (await progress()).latency!;
    assert.equal(started.baseline.routersMs, null, 'no router reports');
    assert.ok(
      started.baseline.probeMs < 20,
      `the baseline is the fast probe: ${started.baseline.probeMs} ms`,
    );
    if (slowness === 'statements') {
      const { statementsMs } = started.baseline;
      assert.ok(
        statementsMs != null && statementsMs < 10,
        `the baseline is the application's fast statements: ${statementsMs} ms`,
      );
    } else {
      assert.equal(started.baseline.statementsMs, null, 'the test database does not count statements');
    }

    return {
      table,
      client,
      handle,
      progress,
      started,
      slow: () => db.old.query(`UPDATE ${health} SET slow = true`),
      /** Makes the application fast again; the progress once the limit is lifted, or the copy ended. */
      fastAgain: async () => {
        await db.old.query(`UPDATE ${health} SET slow = false`);
        return waitFor('the limit lifted', progress, (p) => p.latency?.limit === null || p.phase === 'done');
      },
      stopWriting,
      braked: async () => {
        const braked = await waitFor(
          'the brake to come on',
          progress,
          (p) => (p.latency?.decreases ?? 0) > 0 || p.phase === 'done',
        );
        assert.notEqual(braked.phase, 'done', 'the copy ended before the brake came on');
        return braked.latency!;
      },
      /**
       * Waits for the copy, then drains the writer's changes to new and compares row by row; the
       * brake as the copy left it, and the writes made.
       */
      finish: async () => {
        let final;
        try {
          const result = await handle.result();
          assert.equal(result.rowsCopied, rows);
          final = (await progress()).latency!;
        } finally {
          await stopWriting();
          await client.connection.close();
        }
        // Reconciliation is the migration's; a backfill on its own only installs capture.
        await withMigrationActivities(env, async (activities) => {
          const servers = await activities.bindServers({ migration });
          await drainUntilEmpty(activities, { migration, servers, from: 'old', to: 'new' });
        });
        const comparison = await compareTables(db.old, db.new, table, ['id']);
        assert.deepEqual(comparison.differences, []);
        return { brake: final, written };
      },
    };
  }

  it('limits the copy while the application is slow, says why, and lifts the limit once it is fast again', async () => {
    const rows = 60_000;
    const copy = await brakedCopy(rows);
    try {
      assert.equal(copy.started.limit, null, 'a table under slowStartMinRows starts at full speed');
      await copy.slow();
      const brake = await copy.braked();
      assert.ok(
        brake.limit! >= 300 && brake.limit! <= 2000,
        `limit ${brake.limit}: half the copy's rate at most`,
      );
      assert.match(
        brake.reason ?? '',
        /^probe query p99 [\d.]+ ms \(\d+ runs\) above its target [\d.]+ ms \(2× baseline [\d.]+ ms\): copy limited to \d+ rows\/s$/,
      );
      // The operator sees it: the live status's lines, and the partitions wait for the lower limit.
      const report = await readBackfillProgress(copy.client, copy.handle.workflowId);
      const lines = tableLines({
        table: `public.${copy.table.table}`,
        estimatedRows: rows,
        rowsCopied: report.rowsCopied,
        backfillDone: false,
        verification: null,
        percent: report.percent,
        verifying: null,
        backfill: report,
      });
      assert.ok(
        lines.some((line) =>
          /^ {4}latency brake: probe query p99 .* copy limited to \d+ rows\/s \(\d+ down, \d+ up\)$/.test(
            line,
          ),
        ),
        lines.join('\n'),
      );
      console.log(`  ${lines.find((line) => line.includes('latency brake'))!.trim()}`);

      // Each partition started with small batches that grew, so a first cut was not stuck behind
      // whole batches already in flight.
      for (const partition of (await copy.progress()).partitions) {
        const sizes = await batchSizes(copy.client, partition.workflowId);
        assert.deepEqual(
          sizes.slice(0, 3),
          [1, 2, 4],
          `${partition.workflowId}: batches of ${sizes.join(', ')}`,
        );
      }

      const lifted = await copy.fastAgain();
      if (lifted.phase !== 'done') {
        assert.ok(lifted.latency!.increases >= 1);
        assert.match(lifted.latency!.reason ?? '', /within its target [\d.]+ ms again: copy limit lifted$/);
      }
    } finally {
      const { brake: final, written } = await copy.finish();
      console.log(
        `  brake: ${final.decreases} down, ${final.increases} up; ${written} application writes during the copy`,
      );
      assert.ok(final.decreases >= 1);
    }
  });

  it('starts a large table slowly while the application is busy, and doubles the limit while it stays calm', async () => {
    const rows = 40_000;
    const copy = await brakedCopy(rows, 'probe', {
      maxRowsPerSecond: null,
      // Every reading well within the target, however busy the machine: what is tested is the
      // start and the doubling, not how the probe reads (a first reading of 11 ms on a busy CI
      // machine cut the limit instead).
      latencyTarget: { slowStartMinRows: 20_000, startRowsPerSecond: 1000, floorMs: 1000 },
    });
    try {
      assert.equal(copy.started.limit, 1000);
      assert.equal(copy.started.slowStart, true);
      assert.match(
        copy.started.reason ?? '',
        /^slow start: the application is busy and the table has ~\d+ rows, so the copy starts at 1000 rows\/s and doubles at each reading within the target$/,
      );
      const copying = await waitFor(
        'both partitions',
        copy.progress,
        (p) => p.partitions.length === 2 || p.phase === 'done',
      );
      // Each partition started at its share of the slow start, and was then told the doubled share:
      // the first reading (one second in, the application calm) doubles the limit.
      for (const partition of copying.partitions) {
        await waitFor(
          'a first throttle signal',
          () => partitionRates(copy.client, partition.workflowId),
          (rates) => rates.length >= 2,
        );
        const rates = await partitionRates(copy.client, partition.workflowId);
        assert.deepEqual(
          rates.slice(0, 2),
          [500, 1000],
          `${partition.workflowId}: rates ${rates.join(', ')}`,
        );
      }
    } finally {
      const { brake: final, written } = await copy.finish();
      console.log(
        `  brake: ${final.increases} up, ${final.decreases} down, last: ${final.reason}; ${written} application writes during the copy`,
      );
      assert.ok(final.increases >= 1, 'the limit rose');
    }
  });

  it("follows the application's own statements (pg_stat_statements) where the probe stays fast", async () => {
    const copy = await brakedCopy(40_000, 'statements');
    try {
      await copy.slow();
      // A hiccup of the fast probe on a busy machine may cut once too; what matters is that the
      // slow statements, which the probe does not see, cut the copy.
      const braked = await waitFor(
        'the brake to cut by the statements',
        copy.progress,
        (p) =>
          p.phase === 'done' ||
          (p.latency?.last?.by === 'statements' && / above its target /.test(p.latency.reason ?? '')),
      );
      assert.notEqual(braked.phase, 'done', 'the copy ended before the statements cut it');
      const brake = braked.latency!;
      assert.equal(brake.last?.by, 'statements');
      assert.match(
        brake.reason ?? '',
        /^application statements mean [\d.]+ ms \(\d+ calls, pg_stat_statements\) above its target [\d.]+ ms \(2× baseline [\d.]+ ms\): copy limited to \d+ rows\/s$/,
      );
      console.log(`  ${brake.reason}`);
      const lifted = await copy.fastAgain();
      if (lifted.phase !== 'done') {
        assert.match(
          lifted.latency!.reason ?? '',
          /^application statements mean [\d.]+ ms .* within its target [\d.]+ ms again: copy limit lifted$|^probe query p99 .* within its target [\d.]+ ms again: copy limit lifted$/,
        );
      }
    } finally {
      const { brake: final } = await copy.finish();
      assert.ok(final.decreases >= 1);
    }
  });

  it("counts the application's statements, not the migration's own (pg_stat_statements)", async () => {
    const own = await freshDatabases('brake_counts');
    ends.push(own.end);
    await own.pools.old.query('CREATE EXTENSION pg_stat_statements');
    const migrator = new pg.Pool({ connectionString: own.migratorUrls.old, max: 2 });
    ends.push(() => migrator.end());
    let running = true;
    const loop = async (run: () => Promise<unknown>, pauseMs: number) => {
      while (running) {
        await run();
        await new Promise((resolve) => setTimeout(resolve, pauseMs));
      }
    };
    // The application: statements of 2 ms. The migration's role: statements of 200 ms, two at once,
    // which would lift the mean far above 10 ms if they counted.
    const loops = [
      loop(() => own.pools.old.query('SELECT pg_sleep(0.002)'), 20),
      loop(() => migrator.query('SELECT pg_sleep(0.2)'), 0),
      loop(() => migrator.query('SELECT pg_sleep(0.2)'), 0),
    ];
    try {
      const reading = await withMigrationActivities(own.env, async (activities) => {
        const migration = `test-counts-${randomUUID().slice(0, 8)}`;
        const servers = await activities.bindServers({ migration });
        return runActivity(activities.measureApplicationLatency, {
          migration,
          servers,
          source: 'old',
          probeQuery: 'SELECT 1',
          minSamples: 20,
          windowMs: 2000,
        });
      });
      const { statements } = reading;
      assert.ok(statements != null && statements.calls >= 20, `counted: ${JSON.stringify(statements)}`);
      assert.ok(
        statements.meanMs >= 2 && statements.meanMs < 10,
        `the application's 2 ms statements alone: mean ${statements.meanMs} ms`,
      );
      console.log(`  ${statements.calls} statements of the application, mean ${statements.meanMs} ms`);
    } finally {
      running = false;
      await Promise.all(loops);
    }
  });

  it("leaves out a probe session's first statement, which warms the session, and says why it counts no statements", async () => {
    const setting = `lm_test.warm_${randomUUID().slice(0, 8)}`;
    // The first run on each session sleeps 300 ms (a new session's first statement is the slowest).
    const probeQuery = `SELECT 1 FROM (SELECT CASE WHEN current_setting('${setting}', true) IS DISTINCT FROM 'on' THEN pg_sleep(0.3) END, set_config('${setting}', 'on', false)) AS first_run`;
    // Named as the migration's sessions are, so that the other tests' brakes do not count this
    // process's probe, which runs on for a while, as the application.
    const session = {
      connectionString: servers.oldUrl,
      application_name: 'pg-live-migrate latency probe test',
    };
    const { runs, statements, statementsUnavailable } = await LATENCY_PROBES.window(
      session,
      probeQuery,
      60_000,
    );
    assert.ok(runs.length >= MIN_RUNS, `${runs.length} runs`);
    assert.ok(runs.at(-1)! < 300, `the slowest of ${runs.length} runs took ${runs.at(-1)} ms`);
    // The test database has no pg_stat_statements: the reading says so, and counts none.
    assert.equal(statements, null);
    assert.match(statementsUnavailable ?? '', /^pg_stat_statements is not installed in this database/);
  });

  it('lifts the limit once the application stops, though the probe stays slow', async () => {
    const rows = 40_000;
    const copy = await brakedCopy(rows);
    try {
      await copy.slow();
      await copy.braked();
      const written = await copy.stopWriting();
      const lifted = await waitFor(
        'the limit lifted with the application idle',
        copy.progress,
        (p) => p.latency?.limit === null || p.phase === 'done',
      );
      assert.notEqual(lifted.phase, 'done', 'the copy ended before the application was seen idle');
      const brake = lifted.latency!;
      assert.match(
        brake.reason ?? '',
        /^no session of the application ran a statement on the source \(probe query p99 [\d.]+ ms\): copy limit lifted$/,
      );
      assert.equal(brake.last?.applicationIdle, true);
      assert.ok(brake.last.ms >= 30, `the probe is still slow: ${brake.last.ms} ms`);
      console.log(`  ${written} application writes, then none: ${brake.reason}`);
      // The copy goes on at the operator's rate: no reading while the application is idle brakes.
      const done = await waitFor('the copy', copy.progress, (p) => p.phase === 'done');
      assert.equal(done.latency!.limit, null);
      assert.equal(done.latency!.decreases, brake.decreases, 'no brake while idle');
    } finally {
      await copy.finish();
    }
  });

  it('copies without the brake, and says why, when its probe query cannot run', async () => {
    const suffix = randomUUID().slice(0, 8);
    const table = { schema: 'public', table: `unbraked_${suffix}` };
    const rows = 5000;
    await pools.old.query(sampleTableDdl(table));
    await pools.new.query(sampleTableDdl(table));
    await seedSampleRows(pools.old, table, rows);
    const { result, progress } = await runBackfill(table, 500, {
      migration: `test-brake-${suffix}`,
      throttle: { latencyTarget: { probeQuery: `SELECT 1 FROM public.gone_${suffix}` } },
    });
    assert.equal(result.rowsCopied, rows);
    assert.equal(progress.latency, undefined);
    assert.match(
      progress.latencyUnread ?? '',
      new RegExp(
        `^could not read the application's latency before the copy \\(the probe query failed: relation "public.gone_${suffix}" does not exist\\): copying without the latency brake$`,
      ),
    );
    console.log(`  ${progress.latencyUnread}`);
    const comparison = await compareTables(pools.old, pools.new, table, ['id']);
    assert.deepEqual(comparison.differences, []);
  });
});
