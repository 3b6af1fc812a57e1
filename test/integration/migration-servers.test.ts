// Hazard 14 (issue 11, case 7), through the migration workflow on real servers: a migration is bound
// to the servers it prepared on. A worker on the same task queue but connected to another pair of
// databases (another stack's, a typo in a URL) fails every activity at once, without retry, naming
// both identities; the migration holds with that reason and nothing is written to the wrong
// databases. Once a worker with the right servers runs again, `resume` goes on. Old and new being
// one database is refused when the migration binds.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createActivities } from '../../activities';
import { HELPER_SCHEMA } from '../../db/helper-schema';
import { ConnectionPools } from '../../db/pools';
import { quoteTable } from '../../db/sql';
import { MigrationControl, startMigration } from '../../client/migrations';
import { resolveConnections } from '../../config/connections';
import { parseMigrationConfig } from '../../config/load';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { readStage } from '../../db/stage-store';
import { createMigrationWorker } from '../../worker/create-worker';
import { refusalMessage } from '../harness/backfill';
import { waitForMigration } from '../harness/migration';
import { freshDatabases, testMigration } from '../harness/router';
import { installQuietRuntime, temporalClient, testSite } from '../harness/servers';

installQuietRuntime();

/** A worker on `taskQueue` with the connections `env` gives, running until stopped. */
async function runWorker(taskQueue: string, env: NodeJS.ProcessEnv) {
  const worker = await createMigrationWorker(testSite(taskQueue), env);
  let release!: () => void;
  const running = worker.runUntil(new Promise<void>((resolve) => (release = resolve)));
  return {
    stop: async () => {
      release();
      await running;
    },
  };
}

describe('a migration bound to its servers', () => {
  let right: Awaited<ReturnType<typeof freshDatabases>>;
  let wrong: Awaited<ReturnType<typeof freshDatabases>>;
  const table = { schema: 'public', table: 'accounts' };
  const taskQueue = `servers-${testMigration('queue')}`;

  before(async () => {
    right = await freshDatabases('servers_right');
    wrong = await freshDatabases('servers_wrong');
    for (const db of [right, wrong]) {
      await db.pools.old.query(sampleTableDdl(table));
      await db.pools.new.query(sampleTableDdl(table));
      await seedSampleRows(db.pools.old, table, 300);
    }
  });

  after(async () => {
    await right.end();
    await wrong.end();
  });

  it('a worker connected to other databases fails without retry, naming both; the migration holds, and goes on with the right worker', async () => {
    const client = await temporalClient();
    const migration = testMigration('bound');
    const control = new MigrationControl(client, migration);
    let worker = await runWorker(taskQueue, right.env);
    try {
      await startMigration(
        client,
        parseMigrationConfig({
          name: migration,
          tables: ['public.accounts'],
          cutover: { approvals: ['shadow'], stepSoak: 200 },
          verification: { settle: 100 },
          queryBenchmark: { topStatements: 0 },
        }),
        taskQueue,
      );
      await waitForMigration(
        control,
        'dual_write done, held before shadow',
        (s) => s.held?.kind === 'approval',
      );
      await worker.stop();

      // Another stack's worker picks up the task queue.
      worker = await runWorker(taskQueue, wrong.env);
      await control.approve('test');
      const held = await waitForMigration(
        control,
        'the migration to hold for the wrong servers',
        (s) => s.held?.kind === 'failure' && s.held.cause?.code === 'WrongServers',
      );
      const rightDb = new URL(right.urls.old).pathname.slice(1);
      const wrongDb = new URL(wrong.urls.old).pathname.slice(1);
      assert.match(
        held.held!.reason,
        /this worker's (old|new) database is not the one the migration was prepared on/,
      );
      assert.match(
        held.held!.reason,
        new RegExp(`Recorded: .*database ${rightDb}.*; this worker: .*database ${wrongDb}`),
      );
      assert.ok(!held.held!.reason.includes(new URL(right.urls.old).password), 'no password in the reason');
      assert.equal(held.stage, 'dual_write');
      // Nothing reached the wrong databases: no stage, no claim, no copied row.
      assert.equal((await readStage(wrong.pools.old, migration)).version, 0);
      const claims = await wrong.pools.old.query(
        `SELECT 1 FROM ${HELPER_SCHEMA}.migration_tables WHERE migration = $1`,
        [migration],
      );
      assert.equal(claims.rowCount, 0);
      const copied = await wrong.pools.new.query<{ n: string }>(
        `SELECT count(*) AS n FROM ${quoteTable(table)}`,
      );
      assert.equal(Number(copied.rows[0]?.n), 0);
      await worker.stop();

      // The right worker again: resume goes on into shadow.
      worker = await runWorker(taskQueue, right.env);
      await control.resume();
      await waitForMigration(
        control,
        'the migration in shadow',
        (s) => s.stage === 'shadow' && s.held === null,
      );
      assert.equal((await readStage(right.pools.old, migration)).stage, 'shadow');
      await control.abort('test');
    } finally {
      await worker.stop();
      await client.connection.close();
    }
  });

  it('refuses to bind old and new to one database', async () => {
    const pools = new ConnectionPools(
      resolveConnections(testSite('unused'), { ...right.env, NEW_DATABASE_URL: right.env.OLD_DATABASE_URL }),
    );
    try {
      await assert.rejects(createActivities({ pools }).bindServers({ migration: 'same' }), (err) => {
        assert.match(refusalMessage(err), /old and new are the same database/);
        return true;
      });
    } finally {
      await pools.end();
    }
  });
});
