// Hazard 11 (issue 11, case 1), through the migration workflow on real servers: a column added on old
// while the backfill runs, then written, is caught before any row is copied, synced or verified
// under the wrong shape. The migration holds with the table and the change in its reason; it never
// reports a verification. `resume` while new still lacks the column holds again and says what is
// missing; once the same column is added on new, `resume` records the new definitions and the
// migration goes on: the backfill keeps what it copied, the writes of the new column reach new, and
// verification then compares every column, the new one included.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { TableRef } from '../../model/tables';
import { quoteTable } from '../../db/sql';
import { compareTables } from '../../db/verifier';
import { MigrationControl, startMigration } from '../../client/migrations';
import { parseMigrationConfig } from '../../config/load';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { startRunningWorker } from '../harness/backfill';
import { waitForMigration } from '../harness/migration';
import { freshDatabases, testMigration } from '../harness/router';
import { installQuietRuntime } from '../harness/servers';
import { waitFor } from '../harness/wait';

installQuietRuntime();

const ROWS = 3000;

describe('a schema change while a migration runs', () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  let worker: Awaited<ReturnType<typeof startRunningWorker>>;
  const table: TableRef = { schema: 'public', table: 'accounts' };
  const name = quoteTable(table);

  before(async () => {
    db = await freshDatabases('schema_drift');
    await db.pools.old.query(sampleTableDdl(table));
    await db.pools.new.query(sampleTableDdl(table));
    await seedSampleRows(db.pools.old, table, ROWS);
    worker = await startRunningWorker('schema-drift', undefined, db.env);
  });

  after(async () => {
    await worker.stop();
    await db.end();
  });

  it('holds with the table and the change before copying, syncing or verifying under the wrong shape, and goes on once both sides match', async () => {
    const migration = testMigration('drift');
    const control = new MigrationControl(worker.client, migration);
    await startMigration(
      worker.client,
      parseMigrationConfig({
        name: migration,
        tables: ['public.accounts'],
        chunkSize: 100,
        partitions: 1,
        chunksPerActivity: 1,
        // Slow enough that the column is added while most of the table is still to copy.
        throttle: { maxRowsPerSecond: 300 },
        cutover: { approvals: ['shadow'] },
        verification: { settle: 200 },
        queryBenchmark: { topStatements: 0 },
      }),
      worker.taskQueue,
    );
    const rowsOnNew = async () =>
      Number((await db.pools.new.query<{ n: string }>(`SELECT count(*) AS n FROM ${name}`)).rows[0]?.n);
    await waitFor('the backfill to copy its first chunk', rowsOnNew, (n) => n > 0);

    // DDL on old mid-backfill, then writes of the new column (a cron job's, past any router).
    await db.pools.old.query(`ALTER TABLE ${name} ADD COLUMN extra integer DEFAULT 7`);
    await db.pools.old.query(`UPDATE ${name} SET extra = id WHERE id <= 50`);
    let status = await waitForMigration(
      control,
      'the migration to hold for the schema change',
      (s) => s.held?.kind === 'failure',
    );
    assert.match(
      status.held!.reason,
      /the definition of "public"\."accounts" changed on the old database .* column extra added \(integer DEFAULT 7\)/,
    );
    assert.equal(status.held!.cause?.code, 'SchemaChanged');
    assert.equal(status.stage, 'dual_write');
    assert.equal(status.verifiedClean, null, 'nothing was verified under the wrong shape');
    assert.equal(status.tables[0]!.verification, null);
    assert.ok((await rowsOnNew()) < ROWS, 'the copy stopped before the end of the table');
    const columnsOnNew = await db.pools.new.query(
      `SELECT 1 FROM information_schema.columns WHERE table_name = 'accounts' AND column_name = 'extra'`,
    );
    assert.equal(columnsOnNew.rowCount, 0, 'new was not changed behind the operator');

    // Resumed while only old has the column: held again, saying what is missing on new.
    await control.resume();
    status = await waitForMigration(
      control,
      'the migration to hold again: new lacks the column',
      (s) => s.held?.kind === 'failure' && /not complete on both sides/.test(s.held.reason),
    );
    assert.match(status.held!.reason, /column "extra": missing on new/);

    // The same change on new; resumed, the migration records both definitions and goes on.
    await db.pools.new.query(`ALTER TABLE ${name} ADD COLUMN extra integer DEFAULT 7`);
    await control.resume();
    const final = await waitForMigration(
      control,
      'the backfill and a clean verification, held before shadow',
      (s) => s.held?.kind === 'approval',
    );
    assert.equal(final.verifiedClean, true);
    assert.equal(final.tables[0]!.verification?.differences, 0);
    assert.equal(final.tables[0]!.verification?.rowsFrom, ROWS);
    assert.ok(final.events.some((event) => /schema checked again after the change/.test(event.text)));
    const comparison = await compareTables(db.pools.old, db.pools.new, table, ['id']);
    assert.equal(comparison.differenceCount, 0, JSON.stringify(comparison.differences));
    const extra = await db.pools.new.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${name} WHERE extra = id AND id <= 50`,
    );
    assert.equal(extra.rows[0]?.n, 50, 'the writes of the new column reached new');
    await control.abort('test');
  });
});
