// Several workers share one migration (issue 13, item 8): three worker processes poll one task queue;
// each copies chunks of the backfill (counted from its own log); one is SIGKILLed mid-backfill and
// another during the write switch; the migration goes on to switched with the remaining and
// restarted workers, and new equals old row by row.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MigrationControl, startMigration } from '../../client/migrations';
import { parseMigrationConfig } from '../../config/load';
import { compareTables } from '../../db/verifier';
import type { TableRef } from '../../model/tables';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { freshDatabases } from '../harness/router';
import { temporalClient } from '../harness/servers';
import { waitFor } from '../harness/wait';
import { startWorkerProcess, type WorkerProcess } from '../harness/worker-process';

describe('three workers on one task queue', () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  const workers: WorkerProcess[] = [];
  const table: TableRef = { schema: 'public', table: 'shared' };
  const rows = 30_000;

  before(async () => {
    db = await freshDatabases('scale_out');
    await db.pools.old.query(sampleTableDdl(table));
    await db.pools.new.query(sampleTableDdl(table));
    await seedSampleRows(db.pools.old, table, rows);
  });

  after(async () => {
    await Promise.all(workers.map((worker) => worker.kill('SIGKILL')));
    await db.end();
  });

  /** Chunk activities a worker process finished, from its own log. */
  const copiedBy = (worker: WorkerProcess) =>
    worker.lines.filter((line) => line.activityType === 'copyChunks' && line.msg === 'Activity completed')
      .length;

  it('each copies chunks; one killed mid-backfill and one during the write switch; new equals old', async () => {
    const taskQueue = `scale-out-${db.urls.old.split('_').pop()}`;
    const start = () => {
      const worker = startWorkerProcess(taskQueue, { ...db.env, LOG_LEVEL: 'debug' });
      workers.push(worker);
      return worker;
    };
    const first = [start(), start(), start()];
    const client = await temporalClient();
    try {
      const migration = `scale-out-${taskQueue.split('-').pop()}`;
      const config = parseMigrationConfig({
        name: migration,
        tables: ['public.shared'],
        chunkSize: 200,
        partitions: 3,
        chunksInFlight: 2,
        chunksPerActivity: 1,
        throttle: { maxRowsPerSecond: 3000 },
        temporal: { taskQueue },
        cutover: { readSteps: [100], stepSoak: 300, soak: '1s', approvals: [] },
        verification: { settle: 100 },
        queryBenchmark: { topStatements: 0 },
      });
      assert.equal((await startMigration(client, config, taskQueue)).started, true);
      const control = new MigrationControl(client, migration);

      // Mid-backfill: every worker has copied chunks; one of them dies.
      await waitFor(
        'each of the three workers to copy chunks',
        () => Promise.resolve(first.map(copiedBy)),
        (counts) => counts.every((n) => n >= 2),
      );
      const status = await control.status();
      assert.equal(status.tables[0]?.backfillDone, false, 'still backfilling when the first worker dies');
      console.log(`  chunks copied by each worker before the kill: ${first.map(copiedBy).join(', ')}`);
      await first[0]!.kill('SIGKILL');
      start();

      // During the write switch: another dies.
      const atSwitch = await waitFor(
        'the write switch',
        () => control.status(),
        (s) => s.phase === 'switching' || s.step === 'switched' || s.error !== null,
        3000,
      );
      assert.equal(atSwitch.error, null);
      await first[1]!.kill('SIGKILL');
      start();
      // The switch is quick without routers to wait for: say where the kill landed.
      console.log(`  second kill at ${atSwitch.step} — ${atSwitch.phase}`);
      const switched = await waitFor(
        'switched',
        () => control.status(),
        (s) => (s.step === 'switched' && s.phase !== 'switching') || s.error !== null,
        3000,
      );
      assert.equal(switched.error, null);
      assert.equal(switched.switches.at(-1)?.switched, true, JSON.stringify(switched.switches));

      const comparison = await compareTables(db.pools.old, db.pools.new, table, ['id']);
      assert.deepEqual(comparison.differences, []);
      assert.equal(comparison.rowsNew, rows);
      const all = workers.map(copiedBy);
      console.log(
        `  chunks copied by each worker process (three first, then two restarted): ${all.join(', ')}`,
      );
      await control.abort('test').catch(() => undefined);
    } finally {
      await client.connection.close();
    }
  });
});
