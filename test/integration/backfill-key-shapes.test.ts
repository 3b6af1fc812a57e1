// Keys and types that break naive copies: composite, uuid, text (unicode, quotes, backslashes, the
// empty string), sparse and negative bigints, a timestamptz in the key, identity and generated
// columns, float specials, json, intervals, enums. Each table is backfilled, then changed on old and
// reconciled through the change log; new must equal old row for row after each step.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { TableRef } from '../../model/tables';
import { quoteTable } from '../../db/sql';
import { compareTables } from '../../db/verifier';
import { backfillTableWorkflow, reconciliationWorkflow } from '../../workflows';
import { drainAndStopSignal } from '../../workflows/messages';
import { runActivity } from '../harness/activity';
import { backfillInput, startRunningWorker } from '../harness/backfill';
import { withMigrationActivities } from '../harness/router';
import { databasePools, installQuietRuntime } from '../harness/servers';

installQuietRuntime();

describe('backfill and sync of every key shape and tricky types', () => {
  const pools = databasePools();
  const suffix = randomUUID().slice(0, 8);
  let testWorker: Awaited<ReturnType<typeof startRunningWorker>>;

  before(async () => {
    testWorker = await startRunningWorker('key-shapes');
  });

  after(async () => {
    await testWorker.stop();
    await pools.end();
  });

  async function onBothSides(sql: string): Promise<void> {
    await pools.old.query(sql);
    await pools.new.query(sql);
  }

  async function assertEqual(table: TableRef, primaryKey: string[], expectedRows: number): Promise<void> {
    const comparison = await compareTables(pools.old, pools.new, table, primaryKey);
    assert.deepEqual(comparison.differences, []);
    assert.equal(comparison.rowsOld, expectedRows);
    assert.equal(comparison.rowsNew, expectedRows);
  }

  /** Backfills, checks, applies `changes` on old, reconciles, checks again. */
  async function migrate(
    table: TableRef,
    primaryKey: string[],
    chunkSize: number,
    changes: string[],
    options: { partitions?: number } = {},
  ): Promise<{ partitions: number; migration: string }> {
    const id = `${table.table}-${randomUUID().slice(0, 6)}`;
    const backfill = await testWorker.client.workflow.start(backfillTableWorkflow, {
      taskQueue: testWorker.taskQueue,
      workflowId: `backfill-${id}`,
      args: [backfillInput(table, chunkSize, { migration: `shapes-${id}`, ...options })],
    });
    await backfill.result();
    const { rows } = await pools.old.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${quoteTable(table)}`,
    );
    await assertEqual(table, primaryKey, rows[0]?.n ?? -1);
    const { partitions } = await backfill
      .query('backfillProgress')
      .then((p) => p as { partitions: unknown[] });

    for (const change of changes) await pools.old.query(change);
    const reconciliation = await testWorker.client.workflow.start(reconciliationWorkflow, {
      taskQueue: testWorker.taskQueue,
      workflowId: `reconcile-${id}`,
      args: [{ migration: `shapes-${id}`, from: 'old', to: 'new', batchSize: 50, idlePollMs: 100 }],
    });
    await reconciliation.signal(drainAndStopSignal);
    await reconciliation.result();
    const after = await pools.old.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${quoteTable(table)}`);
    await assertEqual(table, primaryKey, after.rows[0]?.n ?? -1);
    return { partitions: partitions.length, migration: `shapes-${id}` };
  }

  it('composite (text, bigint) key over several partitions', async () => {
    const table = { schema: 'public', table: `composite_${suffix}` };
    const name = quoteTable(table);
    await onBothSides(`CREATE TABLE ${name} (region text, id bigint, note text, PRIMARY KEY (region, id))`);
    await pools.old.query(
      `INSERT INTO ${name} SELECT (ARRAY['eu','us','ap','Ωmega'])[1 + g % 4], g * 7, repeat('x', 60) || g
         FROM generate_series(1, 40000) g`,
    );
    const { partitions, migration } = await migrate(table, ['region', 'id'], 997, [
      `UPDATE ${name} SET note = 'changed' WHERE id % 1000 = 0`,
      `DELETE FROM ${name} WHERE id % 1001 = 0`,
      `INSERT INTO ${name} VALUES ('zz', 1, 'new region'), ('eu', 3, 'gap')`,
      // A key change: the old key must disappear on new, the new one appear.
      `UPDATE ${name} SET region = 'moved' WHERE id = 14`,
    ]);
    assert.ok(partitions > 1, `${partitions} partitions`);

    // The chunks' bounds are every chunkSize-th key after the range's lower end, within its upper end
    // (and matching the predicate): fewer than asked once the range ends.
    const keys = async (where: string, params: unknown[] = []) =>
      (
        await pools.old.query<{ key: string[] }>(
          `SELECT ARRAY[region, id::text] AS key FROM ${name} WHERE ${where} ORDER BY region, id`,
          params,
        )
      ).rows.map((row) => row.key);
    const all = await keys('true');
    const range = { lower: all[1500]!, upper: all[30_000]! };
    await withMigrationActivities(process.env, async (activities) => {
      const servers = await activities.bindServers({ migration });
      const bounds = (count: number, predicate?: string) =>
        runActivity(activities.findChunkBounds, {
          migration,
          servers,
          connection: 'old',
          table,
          range,
          chunkSize: 997,
          count,
          ...(predicate !== undefined && { predicate }),
        });
      for (const [count, predicate] of [[40], [5], [40, 'id % 3 = 0'], [1, "region = 'us'"]] as const) {
        const inRange = await keys(
          `(region, id) > ($1, $2::bigint) AND (region, id) <= ($3, $4::bigint) AND ${predicate ?? 'true'}`,
          [...range.lower, ...range.upper],
        );
        const expected = inRange.filter((_, i) => (i + 1) % 997 === 0).slice(0, count);
        assert.deepEqual(
          await bounds(count, predicate),
          expected,
          `${count} chunks, ${predicate ?? 'every row'}`,
        );
        if (count === 40) assert.ok(expected.length < count, 'the range ends first');
      }
    });
  });

  it('uuid keys', async () => {
    const table = { schema: 'public', table: `uuids_${suffix}` };
    const name = quoteTable(table);
    await onBothSides(`CREATE TABLE ${name} (id uuid PRIMARY KEY, n int)`);
    await pools.old.query(`INSERT INTO ${name} SELECT gen_random_uuid(), g FROM generate_series(1, 5000) g`);
    await migrate(table, ['id'], 333, [
      `DELETE FROM ${name} WHERE n % 10 = 0`,
      `UPDATE ${name} SET n = -n WHERE n % 7 = 0`,
      `INSERT INTO ${name} SELECT gen_random_uuid(), 0 FROM generate_series(1, 50)`,
    ]);
  });

  it('text keys with unicode, quotes, backslashes and the empty string', async () => {
    const table = { schema: 'public', table: `texts_${suffix}` };
    const name = quoteTable(table);
    await onBothSides(`CREATE TABLE ${name} (k text PRIMARY KEY, v int)`);
    await pools.old.query(
      `INSERT INTO ${name} VALUES ('', 0), ('Zebra', 1), ('apple', 2), ('Äpfel', 3), ('日本語', 4), ('a b', 5),
        ('it''s', 6), (E'back\\\\slash', 7), ('emoji 🚀', 8), (repeat('long', 300), 9), ('Apple', 10), ('ß', 11)`,
    );
    await migrate(table, ['k'], 3, [
      `UPDATE ${name} SET v = 100 WHERE k = 'it''s'`,
      `DELETE FROM ${name} WHERE k = E'back\\\\slash'`,
      `DELETE FROM ${name} WHERE k = ''`,
      `INSERT INTO ${name} VALUES ('new ''quoted'' \\ key', 12)`,
    ]);
  });

  it('sparse and negative bigint keys with huge gaps', async () => {
    const table = { schema: 'public', table: `sparse_${suffix}` };
    const name = quoteTable(table);
    await onBothSides(`CREATE TABLE ${name} (id bigint PRIMARY KEY, v text)`);
    await pools.old.query(
      `INSERT INTO ${name} VALUES (-4611686018427387904, 'min-ish'), (-1, 'minus one'), (0, 'zero'), (1, 'one'),
        (1000000, 'million'), (1099511627776, '2^40'), (9007199254740993, '2^53 + 1'), (9223372036854775807, 'max')`,
    );
    await migrate(table, ['id'], 2, [
      `UPDATE ${name} SET v = 'changed' WHERE id = 9007199254740993`,
      `DELETE FROM ${name} WHERE id = 9223372036854775807`,
      `INSERT INTO ${name} VALUES (4611686018427387904, '2^62')`,
    ]);
  });

  it('a timestamptz in the key, identity and generated columns, float specials, json, intervals, enums', async () => {
    const table = { schema: 'public', table: `typed_${suffix}` };
    const name = quoteTable(table);
    const mood = `mood_${suffix}`;
    await onBothSides(`CREATE TYPE ${mood} AS ENUM ('sad', 'ok', 'happy')`);
    await onBothSides(`CREATE TABLE ${name} (
      at timestamptz, seq int GENERATED ALWAYS AS IDENTITY,
      f float8, r real, iv interval, j json, d date, t time, m ${mood}, tags text[],
      doubled bigint GENERATED ALWAYS AS (seq * 2) STORED,
      PRIMARY KEY (at, seq))`);
    // Written with a different session time zone than the migration's (UTC).
    await pools.old.query(`SET TimeZone = 'America/Sao_Paulo'`);
    await pools.old.query(
      `INSERT INTO ${name} (at, f, r, iv, j, d, t, m, tags)
       SELECT timestamptz '2024-03-10 01:30:00' + (g % 5) * interval '1 hour 7 minutes 3.25 seconds',
              (ARRAY['NaN', 'Infinity', '-Infinity', '0.1', '-0', '1e308'])[1 + g % 6]::float8,
              g / 3.0, make_interval(days => g, secs => g * 1.5),
              json_build_object('g', g, 'dup', 1, 'dup', 2), date '2000-02-28' + g, time '23:59:59.999999' - g * interval '1 s',
              (ARRAY['sad', 'ok', 'happy'])[1 + g % 3]::${mood},
              CASE WHEN g % 4 = 0 THEN NULL ELSE ARRAY[NULL, 'x', ''] END
         FROM generate_series(1, 300) g`,
    );
    await pools.old.query(`RESET TimeZone`);
    await migrate(table, ['at', 'seq'], 17, [
      `UPDATE ${name} SET f = 'NaN', j = '{"changed": true}' WHERE seq % 11 = 0`,
      `DELETE FROM ${name} WHERE seq % 13 = 0`,
    ]);
  });
});
