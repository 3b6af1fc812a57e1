// The router as a drop-in for pg.Pool (issue 4): every pg calling form, checked-out clients and
// transactions on the authoritative side, the explicit intent override, sticky live reads, shadow
// reads with a planted difference, and Kysely running its own queries and transactions through it.
// In dual_write a write has reached new by the time the call returns.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Kysely, PostgresDialect, sql, type Generated } from 'kysely';
import { ensureHelperSchema, HELPER_SCHEMA } from '../../db/helper-schema';
import type { TableRef } from '../../model/tables';
import { quoteTable } from '../../db/sql';
import { compareTables } from '../../db/verifier';
import type pg from 'pg';
import { RouterError, type MigrationRouter } from '../../router';
import { routingBucket } from '../../router/stage-plan';
import type { RouterStats } from '../../model/gate-stats';
import { createActivities } from '../../activities';
import { ConnectionPools } from '../../db/pools';
import { resolveConnections } from '../../config/connections';
import { databasePools, testSite } from '../harness/servers';
import {
  capturedLogger,
  moveStage,
  removeRoutedCapture,
  routedTable,
  startRouter,
  testMigration,
} from '../harness/router';
import { waitFor } from '../harness/wait';
import { runActivity } from '../harness/activity';

interface SampleRow {
  id: string;
  customer_id: string;
  status: string;
  note: string | null;
}

describe('router: a drop-in for pg.Pool', () => {
  const pools = databasePools();
  let migration: string;
  let router: MigrationRouter;
  let table: TableRef;
  let name: string;
  const events: Record<string, number> = {};

  /** The row on a side; on new, once the router's pending mirrors settled (dual_write answers before them). */
  async function rowOn(pool: 'old' | 'new', id: number): Promise<SampleRow | undefined> {
    if (pool === 'new') await router.mirrorsSettled();
    const { rows } = await pools[pool].query<SampleRow>(
      `SELECT id, customer_id, status, note FROM ${name} WHERE id = $1`,
      [id],
    );
    return rows[0];
  }

  async function assertEqualSides(): Promise<void> {
    await router.mirrorsSettled();
    const comparison = await compareTables(pools.old, pools.new, table, ['id']);
    assert.equal(comparison.differenceCount, 0, JSON.stringify(comparison.differences));
  }

  before(async () => {
    await ensureHelperSchema(pools.old);
    migration = testMigration('pool');
    table = await routedTable(pools.old, pools.new, 'routed', 20, migration);
    name = quoteTable(table);
    ({ router } = await startRouter('pool', { migration }));
    for (const event of ['connect', 'acquire', 'release']) {
      router.on(event, () => (events[event] = (events[event] ?? 0) + 1));
    }
  });

  after(async () => {
    await router.end();
    await removeRoutedCapture(table, migration);
    await pools.end();
  });

  it('off: text, values, config objects, row mode and callbacks run on old, and nothing reaches new', async () => {
    assert.equal(router.stage.stage, 'off');
    const byText = await router.query<SampleRow>(`SELECT id, status FROM ${name} WHERE id = $1`, [3]);
    assert.deepEqual(byText.rows, [{ id: '3', status: (await rowOn('old', 3))?.status }]);
    const byConfig = await router.query({
      text: `SELECT id FROM ${name} WHERE id < $1 ORDER BY id`,
      values: [3],
      rowMode: 'array',
    });
    assert.deepEqual(byConfig.rows, [['1'], ['2']]);
    const byCallback = await new Promise<number>((resolve, reject) =>
      router.query(`SELECT count(*)::int AS n FROM ${name}`, (err, result) =>
        err ? reject(err) : resolve((result?.rows[0] as { n: number }).n),
      ),
    );
    assert.equal(byCallback, 20);
    await router.query(
      `INSERT INTO ${name} (id, customer_id, status, created_at) VALUES (101, 1, 'off', now())`,
    );
    assert.equal((await rowOn('old', 101))?.status, 'off');
    assert.equal(await rowOn('new', 101), undefined, 'off writes old only');
    await assert.rejects(router.query('SELEC 1'), /syntax error/);
    // A database error of the application's own statement reaches it as pg raised it, read or write.
    const asRaised = (code: string, hint?: RegExp) => (err: pg.DatabaseError) => {
      assert.ok(!(err instanceof RouterError), 'not wrapped by the router');
      assert.equal(err.code, code, err.message);
      if (hint !== undefined) assert.match(err.hint ?? '', hint);
      return true;
    };
    await assert.rejects(
      router.query('SELECT no_such_function(1)'),
      asRaised('42883', /No function matches/),
    );
    await assert.rejects(router.query(`UPDATE ${name} SET id = 'x' WHERE id = 1`), asRaised('22P02'));
    const client = await router.connect();
    try {
      await assert.rejects(
        new Promise((resolve, reject) =>
          client.query('SELECT no_such_function(1)', (err, result) => (err ? reject(err) : resolve(result))),
        ),
        asRaised('42883', /No function matches/),
      );
    } finally {
      client.release();
    }
    // The sides equal again for the next stage (as the backfill would leave them).
    await pools.old.query(`DELETE FROM ${name} WHERE id = 101`);
    assert.ok((events.acquire ?? 0) > 0 && (events.release ?? 0) > 0, 'pool events are passed on');
  });

  it('dual_write: a write through the pool, a client or a transaction is on new once its mirror settles', async () => {
    await moveStage(pools.old, migration, [router], 'dual_write');
    await router.query(
      `INSERT INTO ${name} (id, customer_id, status, created_at) VALUES ($1, 7, 'inserted', now())`,
      [201],
    );
    assert.deepEqual(await rowOn('new', 201), await rowOn('old', 201));
    await router.query(`UPDATE ${name} SET note = 'updated' WHERE id = ANY($1)`, [[1, 2, 3]]);
    assert.equal((await rowOn('new', 2))?.note, 'updated');

    const statusBefore = (await rowOn('new', 4))?.status;
    const client = await router.connect();
    try {
      await client.query('BEGIN');
      await client.query(`UPDATE ${name} SET status = 'in-transaction' WHERE id = 4`);
      // Inside a transaction even a read runs on old's session: it sees the transaction's own write.
      const inside = await client.query<SampleRow>(`SELECT status FROM ${name} WHERE id = 4`);
      assert.equal(inside.rows[0]?.status, 'in-transaction');
      await client.query(`DELETE FROM ${name} WHERE id = 5`);
      assert.equal((await rowOn('new', 4))?.status, statusBefore, 'nothing reaches new before the commit');
      await client.query('COMMIT');
      assert.equal((await rowOn('new', 4))?.status, 'in-transaction');
      assert.equal(await rowOn('new', 5), undefined);

      await client.query('BEGIN');
      await client.query(`UPDATE ${name} SET status = 'rolled-back' WHERE id = 6`);
      await client.query('ROLLBACK');
      assert.equal((await rowOn('old', 6))?.status, (await rowOn('new', 6))?.status);
      assert.notEqual((await rowOn('new', 6))?.status, 'rolled-back');

      // A key that changes: the old key goes, the new one comes.
      await client.query(`UPDATE ${name} SET id = 700 WHERE id = 7`);
    } finally {
      client.release();
    }
    assert.equal(await rowOn('new', 7), undefined);
    assert.deepEqual(await rowOn('new', 700), await rowOn('old', 700));
    const tombstone = await pools.new.query(
      `SELECT 1 FROM ${HELPER_SCHEMA}.tombstones WHERE table_name = $1 AND key = ARRAY['5']`,
      [table.table],
    );
    assert.equal(tombstone.rowCount, 1, 'a mirrored delete leaves a tombstone for the backfill');
    assert.ok((await router.metrics.count('mirrors', 'mirrored')) >= 4);
    await assertEqualSides();
  });

  it('Kysely runs its own queries and transactions through the router', async () => {
    interface Database {
      [table: string]: {
        id: Generated<string> | string;
        customer_id: string;
        status: string;
        note: string | null;
        created_at: Date;
      };
    }
    // Kysely's end() would end the router: it gets a pool that ignores it (the test ends the router).
    const db = new Kysely<Database>({
      dialect: new PostgresDialect({
        pool: Object.assign(Object.create(router) as MigrationRouter, { end: () => Promise.resolve() }),
      }),
    });
    const t = table.table;
    await db
      .insertInto(t)
      .values({ id: '301', customer_id: '3', status: 'kysely', note: null, created_at: new Date() })
      .execute();
    await db.updateTable(t).set({ note: 'kysely-updated' }).where('id', '<=', '10').execute();
    await db.transaction().execute(async (trx) => {
      await trx
        .insertInto(t)
        .values({ id: '302', customer_id: '3', status: 'kysely-trx', note: null, created_at: new Date() })
        .execute();
      await trx.deleteFrom(t).where('id', '=', '8').execute();
    });
    await assert.rejects(
      db.transaction().execute(async (trx) => {
        await trx
          .insertInto(t)
          .values({ id: '303', customer_id: '3', status: 'never', note: null, created_at: new Date() })
          .execute();
        throw new Error('the application changes its mind');
      }),
      /changes its mind/,
    );
    const read = await db
      .selectFrom(t)
      .select(['id', 'status'])
      .where('id', 'in', ['301', '302', '303'])
      .orderBy('id')
      .execute();
    assert.deepEqual(read, [
      { id: '301', status: 'kysely' },
      { id: '302', status: 'kysely-trx' },
    ]);
    const counted = await sql<{ n: number }>`SELECT count(*)::int AS n FROM ${sql.table(t)}`.execute(db);
    assert.equal(counted.rows[0]?.n, (await pools.old.query(`SELECT 1 FROM ${name}`)).rowCount);
    await db.destroy();
    await assertEqualSides();
  });

  it('live: reads follow the routing key, stickily; the write intent and transactions stay on old', async () => {
    // A planted difference tells which side answered.
    await pools.new.query(`UPDATE ${name} SET note = 'from new' WHERE id = 9`);
    await pools.old.query(`UPDATE ${name} SET note = 'from old' WHERE id = 9`);
    await moveStage(pools.old, migration, [router], 'live', 50);
    const read = `SELECT note FROM ${name} WHERE id = 9`;
    const answeredBy = async (routingKey: string, how: 'config' | 'scope' | 'client') => {
      let result;
      if (how === 'config') result = await router.query({ text: read, routingKey });
      else if (how === 'scope') result = await router.withContext({ routingKey }, () => router.query(read));
      else {
        const client = await router.connect();
        try {
          result = await router.withContext({ routingKey }, () => client.query(read));
        } finally {
          client.release();
        }
      }
      return (result.rows[0] as { note: string }).note === 'from new' ? 'new' : 'old';
    };
    const users = Array.from({ length: 40 }, (_, i) => `user-${i}`);
    for (const user of users) {
      const expected = routingBucket(user) < 50 ? 'new' : 'old';
      for (const how of ['config', 'scope', 'client', 'config'] as const) {
        assert.equal(
          await answeredBy(user, how),
          expected,
          `${user} (bucket ${routingBucket(user)}) via ${how}`,
        );
      }
    }
    const toNew = users.filter((user) => routingBucket(user) < 50).length;
    assert.ok(toNew > 5 && toNew < 35, `about half the users read from new (${toNew} of 40)`);
    const newUser = users.find((user) => routingBucket(user) < 50)!;
    const pinned = await router.query<SampleRow>({ text: read, routingKey: newUser, intent: 'write' });
    assert.equal(pinned.rows[0]?.note, 'from old', 'intent: write keeps a read on the authoritative side');
    const client = await router.connect();
    try {
      await client.query('BEGIN');
      const inTransaction = await router.withContext({ routingKey: newUser }, () =>
        client.query<SampleRow>(read),
      );
      assert.equal(inTransaction.rows[0]?.note, 'from old', 'a transaction runs on the authoritative side');
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    await moveStage(pools.old, migration, [router], 'live', 100);
    assert.equal(
      await answeredBy('user-without-bucket-luck', 'config'),
      'new',
      'at 100% every read is on new',
    );
    await pools.new.query(`UPDATE ${name} SET note = 'from old' WHERE id = 9`);
  });

  it('shadow: a planted difference is counted and logged by fingerprint; the application gets old’s rows', async () => {
    const { logger, lines } = capturedLogger();
    const shadowing = await startRouter('shadow', { migration, logger, shadow: { sampleRate: 1 } });
    try {
      await moveStage(pools.old, migration, [router, shadowing.router], 'shadow');
      const read = `SELECT id, note FROM ${name} WHERE id BETWEEN $1 AND $2`;
      const same = await shadowing.router.query(read, [1, 4]);
      await waitFor(
        'the matching shadow read',
        () => shadowing.router.metrics.count('shadow', 'match'),
        (n) => n >= 1,
      );
      assert.equal(await shadowing.router.metrics.count('shadow', 'mismatch'), 0);

      await pools.new.query(`UPDATE ${name} SET note = 'secret planted on new' WHERE id = 3`);
      const answer = await shadowing.router.query(read, [1, 4]);
      assert.deepEqual(answer.rows, same.rows, 'the application receives old’s rows');
      await waitFor(
        'the mismatch',
        () => shadowing.router.metrics.count('shadow', 'mismatch'),
        (n) => n >= 1,
      );
      const logged = lines.find((line) => line.msg === 'shadow read: new returned different rows than old');
      assert.ok(logged, 'the mismatch is logged');
      assert.match(String(logged.fingerprint), /^[0-9a-f]{12}$/);
      assert.match(String(logged.statement), /SELECT ID , NOTE FROM/);
      assert.ok(!JSON.stringify(lines).includes('secret planted'), 'values are never logged');
    } finally {
      const original = await pools.old.query<SampleRow>(`SELECT note FROM ${name} WHERE id = 3`);
      await pools.new.query(`UPDATE ${name} SET note = $1 WHERE id = 3`, [original.rows[0]?.note]);
      await shadowing.router.end();
    }
  });

  it('a write of more rows than a mirror carries is left to the change log and reconciliation', async () => {
    await moveStage(pools.old, migration, [router], 'dual_write');
    const before = await router.metrics.count('mirrors', 'too_many_keys');
    const inserted = await router.query(
      `INSERT INTO ${name} (id, customer_id, status, created_at)
       SELECT g, 1, 'bulk', now() FROM generate_series(10001, 14000) AS g`,
    );
    assert.equal(inserted.rowCount, 4000, 'the application’s write succeeds');
    await router.mirrorsSettled();
    assert.equal(await router.metrics.count('mirrors', 'too_many_keys'), before + 1);
    const logged = await pools.old.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${HELPER_SCHEMA}.change_log WHERE table_name = $1 AND (key->>0)::bigint > 10000`,
      [table.table],
    );
    assert.equal(logged.rows[0]?.n, 4000, 'capture logged every key for reconciliation');
    // The next write of this session starts a fresh list: it is mirrored as usual.
    await router.query(`UPDATE ${name} SET note = 'after the bulk write' WHERE id = 1`);
    assert.equal((await rowOn('new', 1))?.note, 'after the bulk write');
  });

  it('the latency the brake reads counts a mirror only when the write waited for it', async () => {
    // A second router of the migration whose window only this test empties (no heartbeat comes).
    const { router: counted } = await startRouter('pool', {
      migration,
      stageWatcher: { pollMs: 100, heartbeatMs: 600_000 },
    });
    try {
      const samples = () => (counted.metrics.publishStats().latency ?? []).reduce((sum, n) => sum + n, 0);
      const writeFive = async (tag: string) => {
        for (let i = 0; i < 5; i++) {
          await counted.query(`UPDATE ${name} SET note = $1 WHERE id = 12`, [`${tag} ${i}`]);
        }
        await counted.mirrorsSettled();
      };
      await moveStage(pools.old, migration, [router, counted], 'dual_write');
      samples();
      await writeFive('dual_write');
      // In dual_write the mirrors follow off the request's path: what the application waited for is
      // its five writes.
      assert.equal(samples(), 5);
      await moveStage(pools.old, migration, [router, counted], 'live', 100);
      samples();
      await writeFive('live');
      // In live each write waits for its mirror, so a read on new sees it: both count.
      assert.equal(samples(), 10);
      assert.equal((await rowOn('new', 12))?.note, 'live 4');
    } finally {
      await counted.end();
    }
  });

  it('routers publish their gate figures (shadow mismatch rate, reads per side, errors on new) and latency', async () => {
    const migrationPools = new ConnectionPools(resolveConnections(testSite('unused'), process.env));
    const activities = createActivities({ pools: migrationPools });
    const gated = await startRouter('gates', {
      shadow: { sampleRate: 1, maxInFlight: 20 },
      stageWatcher: { pollMs: 200, heartbeatMs: 200 },
    });
    try {
      const servers = await activities.bindServers({ migration: gated.migration });
      const figures = (baseline?: Record<string, RouterStats>) =>
        runActivity(activities.readGateFigures, {
          servers,
          connection: 'old',
          migration: gated.migration,
          baseline,
        });
      await moveStage(pools.old, gated.migration, [gated.router], 'shadow');
      const start = await figures();
      const original = await pools.old.query<SampleRow>(`SELECT note FROM ${name} WHERE id = 11`);
      await pools.new.query(`UPDATE ${name} SET note = 'planted for the gate' WHERE id = 11`);
      for (let i = 0; i < 10; i++)
        await gated.router.query(`SELECT id, note FROM ${name} WHERE id = $1`, [11]);
      const shadowed = await waitFor(
        'ten shadow comparisons in a heartbeat',
        () => figures(start.snapshot),
        (f) => f.totals.shadowCompared >= 10,
      );
      assert.equal(shadowed.routers, 1);
      assert.equal(shadowed.shadowMismatchRate, 1, 'every comparison met the planted difference');
      assert.equal(shadowed.totals.readsOld, 10);
      await pools.new.query(`UPDATE ${name} SET note = $1 WHERE id = 11`, [original.rows[0]?.note]);

      await moveStage(pools.old, gated.migration, [gated.router], 'live', 100);
      for (let i = 0; i < 10; i++)
        await gated.router.query(`SELECT id, note FROM ${name} WHERE id = $1`, [11]);
      const live = await waitFor(
        'ten reads on new in a heartbeat',
        () => figures(shadowed.snapshot),
        (f) => f.totals.readsNew >= 10,
      );
      assert.equal(live.newErrorRate, 0);
      assert.equal(live.totals.shadowCompared, 0, 'the window counts only what happened in it');

      // ... and the latency of the application's statements over their last heartbeat, which the
      // copy's brake reads.
      const reading = await waitFor(
        "the application's latency published with a heartbeat",
        async () => {
          for (let i = 0; i < 20; i++)
            await gated.router.query(`SELECT id, note FROM ${name} WHERE id = $1`, [11]);
          return runActivity(activities.measureApplicationLatency, {
            migration: gated.migration,
            servers,
            source: 'old',
            probeQuery: 'SELECT 1',
            minSamples: 5,
          });
        },
        (r) => r.routers !== null,
        100,
      );
      assert.equal(reading.routers!.routers, 1);
      assert.ok(reading.routers!.samples >= 5 && reading.routers!.p99Ms > 0, JSON.stringify(reading));
      assert.ok('p99Ms' in reading.probe && reading.probe.p99Ms > 0 && reading.probe.runs >= 1);
    } finally {
      await gated.router.end();
      await migrationPools.end();
    }
  });
});
