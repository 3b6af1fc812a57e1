// Hazard 13 (issue 11, case 5), through the migration workflow on real servers: one table, one
// migration. A second migration naming a table that a running one covers is refused while it
// prepares, with both names, and leaves nothing behind; the first keeps its capture, guards and
// claims and still carries every write on old to new. A second migration on another table of the
// same database runs beside it; aborting it removes only its own triggers, claims, changes and stage
// row, and keeps the helper schema the first still uses.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { captureTriggerName } from '../../activities/capture';
import { HELPER_SCHEMA } from '../../db/helper-schema';
import { quoteTable } from '../../db/sql';
import { compareTables } from '../../db/verifier';
import { truncateGuardName } from '../../activities/write-guard';
import { MigrationControl, startMigration } from '../../client/migrations';
import { parseMigrationConfig } from '../../config/load';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { startRunningWorker } from '../harness/backfill';
import { waitForMigration } from '../harness/migration';
import { freshDatabases, testMigration } from '../harness/router';
import { installQuietRuntime } from '../harness/servers';
import { waitFor } from '../harness/wait';

installQuietRuntime();

describe('two migrations on one database', () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  let worker: Awaited<ReturnType<typeof startRunningWorker>>;
  const accounts = { schema: 'public', table: 'accounts' };
  const ledger = { schema: 'public', table: 'ledger' };

  before(async () => {
    db = await freshDatabases('overlap');
    for (const table of [accounts, ledger]) {
      await db.pools.old.query(sampleTableDdl(table));
      await db.pools.new.query(sampleTableDdl(table));
      await seedSampleRows(db.pools.old, table, 300);
    }
    worker = await startRunningWorker('overlap', undefined, db.env);
  });

  after(async () => {
    await worker.stop();
    await db.end();
  });

  const config = (name: string, tables: string[]) =>
    parseMigrationConfig({
      name,
      tables,
      chunkSize: 100,
      cutover: { approvals: ['shadow'] },
      verification: { settle: 100 },
      queryBenchmark: { topStatements: 0 },
    });

  /** The migration's triggers on old, by name. */
  async function triggersOf(migration: string, table: { schema: string; table: string }): Promise<string[]> {
    const { rows } = await db.pools.old.query<{ name: string }>(
      `SELECT tgname AS name FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname = ANY($2) ORDER BY 1`,
      [quoteTable(table), [captureTriggerName(migration), truncateGuardName(migration)]],
    );
    return rows.map((row) => row.name);
  }

  /** A write on old, past any router, that the first migration carries to new. */
  async function reachesNew(note: string, id: number): Promise<void> {
    await db.pools.old.query(`UPDATE ${quoteTable(accounts)} SET note = $1 WHERE id = $2`, [note, id]);
    await waitFor(
      `the write ${note} to reach new`,
      async () => (await compareTables(db.pools.old, db.pools.new, accounts, ['id'])).differenceCount,
      (differences) => differences === 0,
    );
  }

  it('refuses a second migration of a claimed table with both names, and the first carries on', async () => {
    const first = testMigration('first');
    const second = testMigration('second');
    await startMigration(worker.client, config(first, ['public.accounts']), worker.taskQueue);
    const firstControl = new MigrationControl(worker.client, first);
    await waitForMigration(
      firstControl,
      'the first migration held before shadow',
      (s) => s.held?.kind === 'approval',
    );

    await startMigration(
      worker.client,
      config(second, ['public.ledger', 'public.accounts']),
      worker.taskQueue,
    );
    await assert.rejects(new MigrationControl(worker.client, second).prepared(), (err: Error) => {
      assert.match(
        err.message,
        new RegExp(
          `migration ${second} failed: migration ${second} cannot take "public"\\."accounts" by migration ${first} \\(since .*\\): that table is already being migrated on the old database`,
        ),
      );
      return true;
    });
    // The refused migration left nothing: no trigger, claim, change or stage row of its own.
    for (const table of [accounts, ledger]) assert.deepEqual(await triggersOf(second, table), []);
    const leftovers = await db.pools.old.query<{ n: number }>(
      `SELECT (SELECT count(*) FROM ${HELPER_SCHEMA}.migration_tables WHERE migration = $1)
            + (SELECT count(*) FROM ${HELPER_SCHEMA}.stages WHERE migration = $1)
            + (SELECT count(*) FROM ${HELPER_SCHEMA}.change_log WHERE migration = $1) AS n`,
      [second],
    );
    assert.equal(Number(leftovers.rows[0]?.n), 0);
    // The first keeps its capture and guard, and still carries a write on old to new.
    assert.deepEqual(
      await triggersOf(first, accounts),
      [captureTriggerName(first), truncateGuardName(first)].sort(),
    );
    await reachesNew('after the refusal', 7);

    // A migration of another table runs beside it; its abort removes only what is its own.
    const beside = testMigration('beside');
    await startMigration(worker.client, config(beside, ['public.ledger']), worker.taskQueue);
    const besideControl = new MigrationControl(worker.client, beside);
    await waitForMigration(
      besideControl,
      'the second migration held before shadow',
      (s) => s.held?.kind === 'approval',
    );
    assert.deepEqual(
      await triggersOf(beside, ledger),
      [captureTriggerName(beside), truncateGuardName(beside)].sort(),
    );
    await besideControl.abort('test');
    const aborted = await besideControl.status();
    assert.equal(aborted.phase, 'aborted');
    assert.deepEqual(await triggersOf(beside, ledger), []);
    assert.deepEqual(
      await triggersOf(first, accounts),
      [captureTriggerName(first), truncateGuardName(first)].sort(),
    );
    const claims = await db.pools.old.query<{ migration: string }>(
      `SELECT DISTINCT migration FROM ${HELPER_SCHEMA}.migration_tables ORDER BY 1`,
    );
    assert.deepEqual(
      claims.rows.map((row) => row.migration),
      [first],
    );
    assert.equal(
      (await db.pools.old.query(`SELECT 1 FROM ${HELPER_SCHEMA}.stages WHERE migration = $1`, [beside]))
        .rowCount,
      0,
      "the aborted migration's stage row went with it",
    );
    await reachesNew('after the abort', 8);
    await firstControl.abort('test');
  });
});
