// Change capture on old (hazard 6) and the pieces reconciliation is built from, against real
// PostgreSQL: capture records writes in the writer's own transaction and nothing for a rolled-back
// one; the TRUNCATE guard refuses TRUNCATE; capture is removed only once drained; a chunk copied
// twice (a retry, or two attempts at once) lands once; discrepancy signals make new equal to old;
// backlog and lag show.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createActivities, prepareWithoutWorkflow } from '../../activities';
import type { CopyChunkInput } from '../../activities/copier';
import { HELPER_SCHEMA } from '../../db/helper-schema';
import type { ServerBinding } from '../../model/servers';
import { ConnectionPools } from '../../db/pools';
import { quoteTable } from '../../db/sql';
import { compareTables } from '../../db/verifier';
import { resolveConnections } from '../../config/connections';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { reconciliationWorkflow } from '../../workflows';
import { discrepancySignal, drainAndStopSignal, reconciliationStatusQuery } from '../../workflows/messages';
import { refusalMessage, startRunningWorker } from '../harness/backfill';
import { databasePools, installQuietRuntime, testSite } from '../harness/servers';
import { runActivity } from '../harness/activity';

installQuietRuntime();

describe('change capture, chunk markers and reconciliation', () => {
  const pools = databasePools();
  const migrationPools = new ConnectionPools(resolveConnections(testSite('unused'), process.env));
  const activities = createActivities({ pools: migrationPools });
  const suffix = randomUUID().slice(0, 8);

  after(async () => {
    await migrationPools.end();
    await pools.end();
  });

  async function seeded(prefix: string, rows: number) {
    const table = { schema: 'public', table: `${prefix}_${suffix}` };
    await pools.old.query(sampleTableDdl(table));
    await pools.new.query(sampleTableDdl(table));
    await seedSampleRows(pools.old, table, rows);
    return table;
  }

  async function logged(table: { table: string }): Promise<string[]> {
    const { rows } = await pools.old.query<{ key: string }>(
      `SELECT key->>0 AS key FROM ${HELPER_SCHEMA}.change_log WHERE table_name = $1 ORDER BY id`,
      [table.table],
    );
    return rows.map((row) => row.key);
  }

  /** Claims `tables` for a migration of their own on both sides, without capture. */
  async function claimed(migration: string, tables: Array<{ schema: string; table: string }>) {
    const servers = await activities.bindServers({ migration });
    await activities.prepareTables({
      migration,
      servers,
      tables: tables.map((table) => ({ table, createIfMissing: false })),
    });
    return servers;
  }

  describe('capture', () => {
    let table: { schema: string; table: string };
    const migration = `captured-${suffix}`;
    let scope: { migration: string; servers: ServerBinding; connection: 'old'; tables: Array<typeof table> };
    before(async () => {
      table = await seeded('captured', 10);
      const servers = await prepareWithoutWorkflow(activities, migration, [table]);
      scope = { migration, servers, connection: 'old', tables: [table] };
      // Installing twice is the same as once.
      await runActivity(activities.installChangeCapture, scope);
    });

    it('logs the key of every committed insert, update (old and new key) and delete, nothing for a rollback', async () => {
      const name = quoteTable(table);
      await pools.old.query(`UPDATE ${name} SET note = 'x' WHERE id = 2`);
      await pools.old.query(`DELETE FROM ${name} WHERE id = 3`);
      await pools.old.query(
        `INSERT INTO ${name} (id, customer_id, status, created_at) VALUES (100, 1, 'new', now())`,
      );
      await pools.old.query(`UPDATE ${name} SET id = 200 WHERE id = 4`);
      const client = await pools.old.connect();
      try {
        await client.query('BEGIN');
        await client.query(`DELETE FROM ${name} WHERE id = 5`);
        await client.query('ROLLBACK');
      } finally {
        client.release();
      }
      assert.deepEqual(await logged(table), ['2', '3', '100', '4', '200']);
    });

    it('refuses TRUNCATE of a migrated table, which would leave its rows on new', async () => {
      await assert.rejects(
        pools.old.query(`TRUNCATE ${quoteTable(table)}`),
        /TRUNCATE of public\.captured_\w+ is refused while migration captured-\w+ moves it/,
      );
    });

    it('is not removed while changes are pending, and is removed once they are drained', async () => {
      await assert.rejects(runActivity(activities.removeChangeCapture, scope), (err) => {
        assert.match(refusalMessage(err), /still has 5 changes that have not reached the other side/);
        return true;
      });
      assert.equal((await logged(table)).length, 5, 'the refusal changed nothing');
      await runActivity(activities.drainChangeLog, {
        migration,
        servers: scope.servers,
        from: 'old',
        to: 'new',
        batchSize: 100,
      });
      await runActivity(activities.removeChangeCapture, scope);
      await pools.old.query(`UPDATE ${quoteTable(table)} SET note = 'after removal' WHERE id = 1`);
      assert.deepEqual(await logged(table), []);
      await runActivity(activities.removeTruncateGuard, scope);
      await pools.old.query(`TRUNCATE ${quoteTable(table)}`);
    });
  });

  describe('chunk markers', () => {
    it('a chunk copied again, or by two attempts at once, lands exactly once', async () => {
      const table = await seeded('twice', 50);
      const migration = `twice-${suffix}`;
      const chunk: CopyChunkInput = {
        migration,
        servers: await claimed(migration, [table]),
        source: 'old',
        target: 'new',
        table,
        range: { lower: null, upper: ['30'] },
      };
      const attempts = await Promise.all([
        runActivity(activities.copyChunk, chunk),
        runActivity(activities.copyChunk, chunk),
      ]);
      // One attempt committed; the other found its marker and reports the same chunk, done.
      assert.deepEqual(attempts.map((attempt) => attempt.alreadyDone).sort(), [false, true]);
      assert.deepEqual(
        attempts.map(({ rowsRead, rowsCopied }) => ({ rowsRead, rowsCopied })),
        [
          { rowsRead: 30, rowsCopied: 30 },
          { rowsRead: 30, rowsCopied: 30 },
        ],
      );
      // Rows written on new since must survive a late retry of the chunk.
      await pools.new.query(`UPDATE ${quoteTable(table)} SET status = 'newer' WHERE id = 7`);
      const again = await runActivity(activities.copyChunk, chunk);
      assert.deepEqual(again, { rowsRead: 30, rowsCopied: 30, alreadyDone: true });
      const { rows } = await pools.new.query<{ n: number; newer: number }>(
        `SELECT count(*)::int AS n, count(*) FILTER (WHERE status = 'newer')::int AS newer FROM ${quoteTable(table)}`,
      );
      assert.deepEqual(rows[0], { n: 30, newer: 1 });
    });
  });

  describe('a chunk racing a mirror', () => {
    it('takes the slow path when a mirrored row lands in its range after the check, and keeps that row', async () => {
      const table = await seeded('raced', 50);
      const migration = `raced-${suffix}`;
      const racer = createActivities({
        pools: migrationPools,
        copierHooks: {
          // What a router's mirror of a fresh write does between the chunk's check and its copy.
          afterRangeChecked: async () => {
            await pools.new.query(
              `INSERT INTO ${quoteTable(table)} (id, customer_id, status, created_at) VALUES (10, 1, 'mirrored', now())`,
            );
          },
        },
      });
      const result = await runActivity(racer.copyChunk, {
        migration,
        servers: await claimed(migration, [table]),
        source: 'old',
        target: 'new',
        table,
        range: { lower: null, upper: ['30'] },
      });
      assert.deepEqual(result, { rowsRead: 30, rowsCopied: 29, alreadyDone: false });
      const { rows } = await pools.new.query<{ n: number; mirrored: number }>(
        `SELECT count(*)::int AS n, count(*) FILTER (WHERE status = 'mirrored')::int AS mirrored FROM ${quoteTable(table)}`,
      );
      assert.deepEqual(rows[0], { n: 30, mirrored: 1 }, 'every row once; the mirrored one as it was written');
    });
  });

  describe('syncer', () => {
    it('applies deletes before upserts, so a unique value can move from a deleted row to a new one', async () => {
      const table = { schema: 'public', table: `unique_${suffix}` };
      const name = quoteTable(table);
      for (const pool of [pools.old, pools.new]) {
        await pool.query(`CREATE TABLE ${name} (id bigint PRIMARY KEY, email text UNIQUE)`);
        await pool.query(`INSERT INTO ${name} VALUES (1, 'a@example.com')`);
      }
      await pools.old.query(`DELETE FROM ${name} WHERE id = 1`);
      await pools.old.query(`INSERT INTO ${name} VALUES (2, 'a@example.com')`);
      const migration = `unique-${suffix}`;
      const synced = await runActivity(activities.syncKeys, {
        migration,
        servers: await claimed(migration, [table]),
        from: 'old',
        to: 'new',
        table,
        keys: [['2'], ['1']],
      });
      assert.deepEqual(synced, { keys: 2, upserted: 1, deleted: 1 });
      const { rows } = await pools.new.query(`SELECT id::int, email FROM ${name}`);
      assert.deepEqual(rows, [{ id: 2, email: 'a@example.com' }]);
    });
  });

  describe('reconciliation workflow', () => {
    let testWorker: Awaited<ReturnType<typeof startRunningWorker>>;
    before(async () => {
      testWorker = await startRunningWorker('reconcile');
    });
    after(async () => {
      await testWorker.stop();
    });

    it('repairs the keys that discrepancy signals name, from old, and reports backlog and lag', async () => {
      const table = await seeded('discrepant', 100);
      const name = quoteTable(table);
      // new starts as a copy of old, then drifts: a missing row, a changed row, an extra row.
      await seedSampleRows(pools.new, table, 100);
      await pools.new.query(`DELETE FROM ${name} WHERE id = 5`);
      await pools.new.query(`UPDATE ${name} SET status = 'drifted', tags = NULL WHERE id = 6`);
      await pools.new.query(
        `INSERT INTO ${name} (id, customer_id, status, created_at) VALUES (1000, 1, 'only on new', now())`,
      );
      const migration = `discrepant-${suffix}`;
      await claimed(migration, [table]);
      const handle = await testWorker.client.workflow.start(reconciliationWorkflow, {
        taskQueue: testWorker.taskQueue,
        workflowId: `reconcile-discrepant-${suffix}`,
        args: [{ migration, from: 'old', to: 'new', idlePollMs: 100 }],
      });
      await handle.signal(discrepancySignal, { table, keys: [['5'], ['6']] });
      await handle.signal(discrepancySignal, { table, keys: [['6'], ['1000']] });
      let status = await handle.query(reconciliationStatusQuery);
      for (let i = 0; i < 600 && (status.keysSynced < 3 || status.backlog > 0); i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        status = await handle.query(reconciliationStatusQuery);
      }
      // Key 6 is synced once or twice, as the two signals happen to be batched.
      assert.ok(status.keysSynced >= 3, `${status.keysSynced} keys synced`);
      assert.equal(status.backlog, 0);
      assert.equal(typeof status.lagSeconds, 'number');
      await handle.signal(drainAndStopSignal);
      const final = await handle.result();
      assert.equal(final.rowsDeleted, 1);
      const comparison = await compareTables(pools.old, pools.new, table, ['id']);
      assert.deepEqual(comparison.differences, []);
    });
  });
});
