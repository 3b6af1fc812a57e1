// The soak after `complete` is a durable timer: the migration reaches `complete` on a Temporal dev
// server of this test's own (a SQLite file), then the worker and the server both stop. A new server
// on the same file and a new worker pick the migration up: the soak ends when it was meant to (not
// earlier, not restarted), retiring waits for approval, and approval retires.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import type { TableRef } from '../../model/tables';
import { compareTables } from '../../db/verifier';
import { MigrationControl, startMigration } from '../../client/migrations';
import { parseMigrationConfig } from '../../config/load';
import { freePort } from '../../provision/ports';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { startTemporalDevServer, type TemporalDevServer } from '../../provision/temporal-server';
import { createMigrationWorker } from '../../worker/create-worker';
import { freshDatabases } from '../harness/router';
import { installQuietRuntime, servers, testSite } from '../harness/servers';
import { waitForMigration } from '../harness/migration';

installQuietRuntime();

const TASK_QUEUE = 'migration-soak';

describe('the soak after complete', () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  const dir = mkdtempSync(path.join(tmpdir(), 'migration-soak-'));
  let server: TemporalDevServer | undefined;
  let port: number;
  const stops: Array<() => Promise<void>> = [];
  const table: TableRef = { schema: 'public', table: 'ledger' };

  before(async () => {
    db = await freshDatabases('migration_soak');
    await db.pools.old.query(sampleTableDdl(table));
    await db.pools.new.query(sampleTableDdl(table));
    await seedSampleRows(db.pools.old, table, 300);
    port = await freePort();
  });

  after(async () => {
    for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
    await server?.stop();
    await db.end();
    rmSync(dir, { recursive: true, force: true });
  });

  const startServer = () =>
    startTemporalDevServer({ cliPath: servers.temporalCli, port, dbFilename: path.join(dir, 'temporal.db') });

  /** A worker and a client on this test's server; stopped in reverse order by `stopAll`. */
  async function startWorkerAndClient(): Promise<{ client: Client; stopAll: () => Promise<void> }> {
    const env = { ...db.env, TEMPORAL_ADDRESS: server!.address };
    const worker = await createMigrationWorker(testSite(TASK_QUEUE), env);
    let release!: () => void;
    const running = worker.runUntil(new Promise<void>((resolve) => (release = resolve)));
    const connection = await Connection.connect({ address: server!.address });
    const stopAll = async () => {
      release();
      await running;
      await connection.close();
    };
    stops.push(stopAll);
    return { client: new Client({ connection }), stopAll };
  }

  it('survives a worker and Temporal server restart, ends on time, and retiring waits for approval', async () => {
    server = await startServer();
    const first = await startWorkerAndClient();
    const config = parseMigrationConfig({
      name: 'soak-restart',
      tables: ['public.ledger'],
      cutover: { readSteps: [100], stepSoak: 100, soak: '8s', approvals: [] },
      verification: { settle: 100 },
      queryBenchmark: { topStatements: 0 },
    });
    await startMigration(first.client, config, TASK_QUEUE);
    const soaking = await waitForMigration(
      new MigrationControl(first.client, 'soak-restart'),
      'the soak',
      (status) => status.phase === 'soaking',
    );
    const soakUntil = soaking.soakUntil!;
    assert.equal(soaking.step, 'complete');

    // Everything stops: the worker, then the server.
    await first.stopAll();
    stops.splice(stops.indexOf(first.stopAll), 1);
    await server.stop();
    assert.ok(Date.now() < soakUntil, 'the timer was still running when everything stopped');
    server = await startServer();
    const second = await startWorkerAndClient();
    const control = new MigrationControl(second.client, 'soak-restart');
    const held = await waitForMigration(
      control,
      'the end of the soak',
      (status) => status.held?.kind === 'retire',
    );
    assert.equal(held.soakUntil, soakUntil, 'the soak was not restarted');
    assert.ok(held.held!.since >= soakUntil, 'the soak did not end early');
    // Old is still reverse-synced and equal to new while it waits.
    const comparison = await compareTables(db.pools.new, db.pools.old, table, ['id']);
    assert.equal(comparison.differenceCount, 0);

    await control.approve('test');
    const final = await control.result();
    assert.equal(final.phase, 'retired');
    const helpers = await db.pools.old.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'live_migrate'`);
    assert.equal(helpers.rowCount, 0);
  });
});
