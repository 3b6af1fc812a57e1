// How a router learns the keys its writes committed, on real PostgreSQL. The capture trigger sends
// them to a router's session as INFO messages with the write's own response, so the mirror needs no
// request on old before it (router/session-keys.ts). These cases provoke what that must get right:
// - every kind of write (insert, update, delete, several rows, a transaction) is mirrored with the
//   keys that came by notice, none is asked for, and new equals old row by row;
// - what a rollback ended (a ROLLBACK, a COMMIT of a failed transaction, an autocommit statement
//   that failed after its trigger ran) is never mirrored, and the next write is;
// - helpers older than the notices (note_written as released before them) still get every write
//   mirrored: the router asks for the session's setting after the write, as routers did before;
// - a session that asks for the setting only (a router before the notices) still finds its keys
//   there, and one transaction is sent at most WRITTEN_NOTICE_LIMIT keys, then '*'.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import {
  COLLECT_SETTING,
  ensureHelperSchema,
  HELPER_SCHEMA,
  NOTIFY_SETTING,
  WRITTEN_NOTICE_CODE,
  WRITTEN_NOTICE_LIMIT,
  WRITTEN_SETTING,
} from '../../db/helper-schema';
import { quoteTable } from '../../db/sql';
import type { TableRef } from '../../model/tables';
import type { MigrationRouter } from '../../router';
import type { WrittenKeys } from '../../router/mirror';
import {
  assertTablesEqual,
  freshDatabases,
  moveStage,
  routedTable,
  startRouter,
  testMigration,
} from '../harness/router';
import { waitFor } from '../harness/wait';

/** note_written as released before the notices: the key goes to the session setting only. */
const NOTE_WRITTEN_BEFORE_NOTICES = `CREATE OR REPLACE FUNCTION ${HELPER_SCHEMA}.note_written(table_schema text, table_name text, key jsonb, entry bigint)
  RETURNS void LANGUAGE plpgsql AS $note$
  DECLARE
    written text := coalesce(current_setting('${WRITTEN_SETTING}', true), '');
  BEGIN
    IF written = '*' THEN RETURN; END IF;
    IF length(written) > 8192 THEN
      written := '*';
    ELSE
      written := written || jsonb_build_array(table_schema, table_name,
        (SELECT jsonb_agg(part) FROM jsonb_array_elements_text(key) AS part), entry::text)::text || E'\\n';
    END IF;
    PERFORM set_config('${WRITTEN_SETTING}', written, false);
  END
  $note$`;

/** The keys of each mirrored write, as "id" strings, in order. */
function keysOf(written: WrittenKeys[]): string[][] {
  return written.map((w) => w.tables.flatMap((t) => t.keys.map((key) => key.join(','))).sort());
}

describe('how a router learns the keys its writes committed', () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  let migration: string;
  let table: TableRef;
  let name: string;

  before(async () => {
    db = await freshDatabases('written_keys');
    migration = testMigration('keys');
    table = await routedTable(db.pools.old, db.pools.new, 'noted', 20, migration, db.env);
    name = quoteTable(table);
  });

  after(async () => {
    await db.end();
  });

  /** A router on the fresh databases whose mirrored writes land in `seen`. */
  async function routerSeeing(seen: WrittenKeys[]): Promise<MigrationRouter> {
    const { router } = await startRouter('keys', {
      migration,
      old: { connectionString: db.urls.old, max: 2 },
      new: { connectionString: db.urls.new, max: 2 },
      testHooks: { afterAuthoritativeCommit: (written) => Promise.resolve(void seen.push(written)) },
    });
    await moveStage(db.pools.old, migration, [router], 'dual_write');
    return router;
  }

  /** Runs the statements in one transaction on a client checked out of the router, and commits. */
  async function inTransaction(router: MigrationRouter, statements: string[]): Promise<void> {
    const client = await router.connect();
    try {
      await client.query('BEGIN');
      for (const statement of statements) await client.query(statement);
      await client.query('COMMIT');
    } finally {
      client.release();
    }
  }

  async function entriesLeft(): Promise<number> {
    const { rows } = await db.pools.old.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${HELPER_SCHEMA}.change_log WHERE migration = $1`,
      [migration],
    );
    return rows[0]!.n;
  }

  it('every kind of write is mirrored with the keys sent with its response, and none is asked for', async () => {
    const seen: WrittenKeys[] = [];
    const router = await routerSeeing(seen);
    try {
      await router.query(`UPDATE ${name} SET note = 'one' WHERE id = 1`);
      await router.query(
        `INSERT INTO ${name} (id, customer_id, status, created_at) VALUES (101, 1, 'new', now())`,
      );
      await router.query(`DELETE FROM ${name} WHERE id = 2`);
      await router.query(`UPDATE ${name} SET note = 'several' WHERE id IN (3, 4, 5)`);
      await inTransaction(router, [
        `UPDATE ${name} SET note = 'in a transaction' WHERE id = 6`,
        `UPDATE ${name} SET note = 'in a transaction' WHERE id = 7`,
      ]);
      await router.mirrorsSettled();
      assert.deepEqual(keysOf(seen), [['1'], ['101'], ['2'], ['3', '4', '5'], ['6', '7']]);
      for (const written of seen) {
        for (const { keys, entries } of written.tables)
          assert.equal(entries.length, keys.length, 'entry ids came too');
      }
      assert.equal(await router.metrics.count('writtenKeys', 'notice'), 5);
      assert.equal(await router.metrics.count('writtenKeys', 'asked'), 0, 'no request for the keys');
      await assertTablesEqual(db.pools.old, db.pools.new, table, 'after the mirrors');
      await waitFor('the mirrored entries to be forgotten', async () => (await entriesLeft()) === 0);
    } finally {
      await router.end();
    }
  });

  it('what a rollback ended is never mirrored, and the next write is', async () => {
    const seen: WrittenKeys[] = [];
    const router = await routerSeeing(seen);
    const before = await db.pools.old.query<{ id: string; note: string | null }>(
      `SELECT id, note FROM ${name} WHERE id IN (8, 9, 10) ORDER BY id`,
    );
    try {
      const client = await router.connect();
      try {
        await client.query('BEGIN');
        await client.query(`UPDATE ${name} SET note = 'rolled back' WHERE id = 8`);
        const rolledBack = await client.query('ROLLBACK');
        assert.equal(rolledBack.command, 'ROLLBACK');
        await client.query('BEGIN');
        await client.query(`UPDATE ${name} SET note = 'failed transaction' WHERE id = 9`);
        await assert.rejects(client.query('SELECT 1/0'), /division by zero/);
        const committed = await client.query('COMMIT');
        assert.equal(committed.command, 'ROLLBACK', 'the COMMIT of a failed transaction rolls it back');
      } finally {
        client.release();
      }
      // One autocommit text of two statements: the update's trigger runs, then the text fails.
      await assert.rejects(
        router.query(`UPDATE ${name} SET note = 'failed statement' WHERE id = 10; SELECT 1/0`),
        /division by zero/,
      );
      await router.query(`UPDATE ${name} SET note = 'after the rollbacks' WHERE id = 11`);
      await router.mirrorsSettled();
      assert.deepEqual(keysOf(seen), [['11']], 'only the committed write is mirrored');
      const after = await db.pools.old.query<{ id: string; note: string | null }>(
        `SELECT id, note FROM ${name} WHERE id IN (8, 9, 10) ORDER BY id`,
      );
      assert.deepEqual(after.rows, before.rows, 'the rolled-back writes changed nothing on old');
      await assertTablesEqual(db.pools.old, db.pools.new, table, 'after the rollbacks');
    } finally {
      await router.end();
    }
  });

  it('helpers older than the notices: the router asks for the keys after the write, and mirrors them all', async () => {
    await db.pools.old.query(NOTE_WRITTEN_BEFORE_NOTICES);
    const seen: WrittenKeys[] = [];
    const router = await routerSeeing(seen);
    try {
      await router.query(`UPDATE ${name} SET note = 'older helpers' WHERE id = 12`);
      await router.query(
        `INSERT INTO ${name} (id, customer_id, status, created_at) VALUES (102, 1, 'new', now())`,
      );
      await inTransaction(router, [
        `UPDATE ${name} SET note = 'older helpers' WHERE id = 13`,
        `DELETE FROM ${name} WHERE id = 14`,
      ]);
      await router.mirrorsSettled();
      assert.deepEqual(keysOf(seen), [['12'], ['102'], ['13', '14']]);
      assert.equal(await router.metrics.count('writtenKeys', 'asked'), 3);
      assert.equal(await router.metrics.count('writtenKeys', 'notice'), 0);
      await assertTablesEqual(db.pools.old, db.pools.new, table, 'with the older helpers');
    } finally {
      await router.end();
    }
  });

  it('a session that asks for the setting only finds its keys there; a transaction is sent at most the limit of keys, then *', async () => {
    // Back to the current helpers (the case above replaced note_written on this database).
    const migrator = new pg.Pool({ connectionString: db.migratorUrls.old, max: 1 });
    try {
      await migrator.query(`DELETE FROM ${HELPER_SCHEMA}.helper_version`);
      await ensureHelperSchema(migrator);
    } finally {
      await migrator.end();
    }
    const session = new pg.Client({ connectionString: db.urls.old });
    await session.connect();
    const notices: string[] = [];
    session.on('notice', (notice) => {
      if (notice.code === WRITTEN_NOTICE_CODE) notices.push(notice.message ?? '');
    });
    try {
      await session.query(`SET ${COLLECT_SETTING} = on`);
      await session.query(`UPDATE ${name} SET note = 'setting only' WHERE id = 15`);
      const setting = await session.query<{ written: string }>(
        `SELECT current_setting('${WRITTEN_SETTING}') AS written`,
      );
      assert.equal(notices.length, 0, 'no notice without live_migrate.notify');
      const [line, rest] = setting.rows[0]!.written.split('\n');
      assert.equal(rest, '', 'one line');
      assert.deepEqual((JSON.parse(line!) as unknown[]).slice(0, 3), ['public', table.table, ['15']]);

      await session.query(`SET ${NOTIFY_SETTING} = on; SET ${WRITTEN_SETTING} = ''`);
      await session.query(
        `INSERT INTO ${name} (id, customer_id, status, created_at)
         SELECT g, 1, 'bulk', now() FROM generate_series(1001, 1300) AS g`,
      );
      assert.equal(notices.length, WRITTEN_NOTICE_LIMIT + 1, 'the limit of keys, then one *');
      assert.equal(notices.at(-1), '*');
      assert.deepEqual((JSON.parse(notices[0]!) as unknown[]).slice(0, 3), ['public', table.table, ['1001']]);
      // The count starts again with the next transaction.
      notices.length = 0;
      await session.query(`UPDATE ${name} SET note = 'next transaction' WHERE id = 16`);
      assert.equal(notices.length, 1);
      const untouched = await session.query<{ written: string }>(
        `SELECT current_setting('${WRITTEN_SETTING}') AS written`,
      );
      assert.equal(untouched.rows[0]!.written, '', 'keys sent as notices are not kept in the setting');
    } finally {
      await session.end();
    }
  });
});
