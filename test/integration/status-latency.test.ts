// Issue 14, item 1: how long the live status takes to read while a worker process (the dev stack's
// shape: workflows and copying activities in one process) copies a table at full speed. The
// figures are printed, not asserted; the test checks only that every read saw the copy running.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { readLiveStatus } from '../../client/live-status';
import { MigrationControl, startMigration } from '../../client/migrations';
import { parseMigrationConfig } from '../../config/load';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { waitForMigration } from '../harness/migration';
import { databasePools, temporalClient } from '../harness/servers';
import { startWorkerProcess, type WorkerProcess } from '../harness/worker-process';

describe('status latency under a full-speed copy', () => {
  const pools = databasePools();
  let worker: WorkerProcess | undefined;

  after(async () => {
    await worker?.kill('SIGKILL');
    await pools.end();
  });

  it('prints how long each read of the live status took while copying', async () => {
    const suffix = randomUUID().slice(0, 8);
    const table = { schema: 'public', table: `fast_${suffix}` };
    await pools.old.query(sampleTableDdl(table));
    await pools.new.query(sampleTableDdl(table));
    await seedSampleRows(pools.old, table, 150_000);
    await pools.old.query(`ANALYZE ${table.table}`);
    const taskQueue = `test-latency-${suffix}`;
    worker = startWorkerProcess(taskQueue);
    const client = await temporalClient();
    try {
      const name = `latency-${suffix}`;
      await startMigration(
        client,
        parseMigrationConfig({
          name,
          tables: [`public.${table.table}`],
          cutover: { approvals: ['shadow'] },
          queryBenchmark: { topStatements: 0 },
        }),
        taskQueue,
      );
      const control = new MigrationControl(client, name);
      await waitForMigration(control, 'the migration at dual_write', (s) => s.phase === 'backfilling');
      const status: number[] = [];
      const live: number[] = [];
      for (;;) {
        let at = Date.now();
        const plain = await control.status();
        status.push(Date.now() - at);
        at = Date.now();
        const view = await readLiveStatus(client, plain);
        live.push(Date.now() - at);
        if (view.tables[0]?.backfillDone === true || view.phase !== 'backfilling') break;
        assert.ok(view.tables[0] !== undefined);
      }
      const sorted = (values: number[]) => [...values].sort((a, b) => a - b);
      const summary = (values: number[]) => {
        const s = sorted(values);
        return `median ${s[Math.floor(s.length / 2)]} ms, max ${s[s.length - 1]} ms over ${s.length} reads`;
      };
      console.log(
        `during a full-speed copy of 150000 rows: status query ${summary(status)}; live figures ${summary(live)}`,
      );
      assert.ok(status.length > 1, 'read while copying');
    } finally {
      await client.connection.close();
    }
  });
});
