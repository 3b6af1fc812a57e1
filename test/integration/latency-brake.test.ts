// The brake that follows the application (issue 12, item 1), on real servers: a backfill whose
// application (one without a router) is timed by the operator's probe query. The probe is made slow
// on demand (an "application" table says so), standing for an application the copy hurts: the brake
// halves the copy's limit with its reason in the backfill's status and current details, the
// partitions wait for the row limit, and once the application is fast again the limit rises and is
// lifted. A writer on old keeps writing throughout, and new equals old at the end.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { compareTables } from '../../db/verifier';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { backfillTableWorkflow } from '../../workflows';
import { backfillProgressQuery } from '../../workflows/messages';
import { readBackfillProgress } from '../../client/backfill-progress';
import { tableLines } from '../../client/live-status';
import { drainUntilEmpty } from '../harness/activity';
import { backfillInput } from '../harness/backfill';
import { withMigrationActivities } from '../harness/router';
import { waitFor } from '../harness/wait';
import { databasePools, temporalClient } from '../harness/servers';
import { startWorkerProcess, type WorkerProcess } from '../harness/worker-process';

describe('the latency brake', () => {
  const pools = databasePools();
  const workers: WorkerProcess[] = [];

  after(async () => {
    await Promise.all(workers.map((worker) => worker.kill('SIGKILL')));
    await pools.end();
  });

  it('limits the copy while the application is slow, says why, and lifts the limit once it is fast again', async () => {
    const suffix = randomUUID().slice(0, 8);
    const table = { schema: 'public', table: `braked_${suffix}` };
    const health = `public.app_health_${suffix}`;
    const migration = `test-brake-${suffix}`;
    const rows = 60_000;
    await pools.old.query(sampleTableDdl(table));
    await pools.new.query(sampleTableDdl(table));
    await seedSampleRows(pools.old, table, rows);
    await pools.old.query(`CREATE TABLE ${health} (slow boolean NOT NULL)`);
    await pools.old.query(`INSERT INTO ${health} VALUES (false)`);
    const slow = (on: boolean) => pools.old.query(`UPDATE ${health} SET slow = $1`, [on]);

    // The application: writes old directly (capture carries them), all through the copy.
    let writing = true;
    let written = 0;
    const writer = (async () => {
      for (let i = 0; writing; i++) {
        await pools.old.query(`UPDATE public.${table.table} SET note = $2 WHERE id = $1`, [
          1 + (i % 500),
          `write ${i}`,
        ]);
        written++;
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();

    const taskQueue = `test-brake-${suffix}`;
    const worker = startWorkerProcess(taskQueue);
    workers.push(worker);
    const client = await temporalClient();
    try {
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
              maxRowsPerSecond: 4000,
              latencyTarget: {
                intervalMs: 1000,
                minRowsPerSecond: 300,
                probeQuery: `SELECT pg_sleep(CASE WHEN slow THEN 0.02 ELSE 0 END) FROM ${health}`,
              },
            },
          }),
        ],
      });
      const progress = () => handle.query(backfillProgressQuery);
      await waitFor('the baseline', async () => (await progress()).latency !== undefined);
      const baseline = (await progress()).latency!.baseline;
      assert.equal(baseline.routersMs, null, 'no router reports');
      assert.ok(baseline.probeMs < 20, `the baseline is the fast probe: ${baseline.probeMs} ms`);

      await slow(true);
      const braked = await waitFor(
        'the brake to come on',
        progress,
        (p) => (p.latency?.limit ?? null) !== null || p.phase === 'done',
      );
      assert.notEqual(braked.phase, 'done', 'the copy ended before the brake came on');
      const brake = braked.latency!;
      assert.ok(
        brake.limit! >= 300 && brake.limit! <= 2000,
        `limit ${brake.limit}: half the copy's rate at most`,
      );
      assert.match(
        brake.reason ?? '',
        /^probe query p90 [\d.]+ ms above its target [\d.]+ ms \(2× baseline [\d.]+ ms\): copy limited to \d+ rows\/s$/,
      );
      // The operator sees it: the live status's lines, and the partitions wait for the lower limit.
      const report = await readBackfillProgress(client, handle.workflowId);
      const lines = tableLines({
        table: `public.${table.table}`,
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
          /^ {4}latency brake: probe query p90 .* copy limited to \d+ rows\/s \(\d+ down, \d+ up\)$/.test(
            line,
          ),
        ),
        lines.join('\n'),
      );
      console.log(`  ${lines.find((line) => line.includes('latency brake'))!.trim()}`);

      await slow(false);
      const lifted = await waitFor(
        'the limit lifted',
        progress,
        (p) => p.latency?.limit === null || p.phase === 'done',
      );
      if (lifted.phase !== 'done') {
        assert.ok(lifted.latency!.increases >= 1);
        assert.match(lifted.latency!.reason ?? '', /within its target [\d.]+ ms again: copy limit lifted$/);
      }
      const result = await handle.result();
      assert.equal(result.rowsCopied, rows);
      writing = false;
      await writer;
      const final = (await progress()).latency!;
      console.log(
        `  brake: ${final.decreases} down, ${final.increases} up; ${written} application writes during the copy`,
      );
      assert.ok(final.decreases >= 1);
    } finally {
      writing = false;
      await writer;
      await client.connection.close();
    }
    // The writer's changes reach new through the change log (reconciliation is the migration's; a
    // backfill on its own only installs capture): drain it, then compare row by row.
    await withMigrationActivities(process.env, async (activities) => {
      const servers = await activities.bindServers({ migration });
      await drainUntilEmpty(activities, { migration, servers, from: 'old', to: 'new' });
    });
    const comparison = await compareTables(pools.old, pools.new, table, ['id']);
    assert.deepEqual(comparison.differences, []);
  });
});
