// The write fence of the switch (hazards 7 and 9's router side), with writes running through two
// routers the whole time: the fence makes routers hold new writes (they wait, none fails) and finish
// the ones in flight, and each acknowledges; no write reaches old after that; the change log drains,
// sequences move, authority flips to new, and the held writes land there, mirrored back to old.
// No write is lost or applied twice: each writer counts its own row up once per acknowledged write.
// A router holding a transaction open never acknowledges, so the switch gives up and lifts the
// fence, and everyone stays on old.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createActivities } from '../../activities';
import { createCapture } from '../../activities/capture';
import { HELPER_SCHEMA } from '../../activities/helper-schema';
import type { TableRef } from '../../activities/inspector';
import { ConnectionPools } from '../../activities/pools';
import { quoteTable } from '../../activities/sql';
import { TableShapes } from '../../activities/table-shapes';
import { compareTables } from '../../activities/verifier';
import { resolveConnections } from '../../config/connections';
import type { MigrationRouter } from '../../router';
import { setStage } from '../../router/stage-store';
import { freshDatabases, moveStage, routedTable, startRouter } from '../harness/router';
import { testSite } from '../harness/servers';
import { waitFor } from '../harness/wait';

const run = <A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> =>
  new MockActivityEnvironment().run<A, R, typeof fn>(fn, ...args);

interface Writer {
  id: number;
  acknowledged: number;
  failures: string[];
  longestMs: number;
}

describe('the write fence of the switch', () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  let migrationPools: ConnectionPools;
  let activities: ReturnType<typeof createActivities>;
  let table: TableRef;
  let name: string;
  const routers: MigrationRouter[] = [];

  before(async () => {
    db = await freshDatabases('router_switch');
    migrationPools = new ConnectionPools(resolveConnections(testSite('unused'), db.env));
    activities = createActivities({ pools: migrationPools });
    table = await routedTable(db.pools.old, db.pools.new, 'switched', 20, db.env);
    name = quoteTable(table);
    // After the switch new is authoritative: its writes are captured there and mirrored to old.
    await createCapture(migrationPools, new TableShapes(migrationPools)).installChangeCapture({
      connection: 'new',
      tables: [table],
    });
  });

  after(async () => {
    await Promise.all(routers.map((router) => router.end()));
    await migrationPools.end();
    await db.end();
  });

  async function drainOldToNew(): Promise<void> {
    for (;;) {
      const drained = await run(activities.drainChangeLog, { from: 'old', to: 'new', batchSize: 500 });
      if (drained.entries === 0 && drained.backlog === 0) return;
    }
  }

  /** Raises the write fence in `live` and waits (at most `timeoutMs`) for the routers' acknowledgements. */
  async function raiseFence(migration: string, timeoutMs: number) {
    const fence = await setStage(db.pools.old, migration, { stage: 'live', readPercent: 50, fenced: true });
    return run(activities.awaitRouterFence, {
      connection: 'old',
      migration,
      version: fence.version,
      timeoutMs,
    });
  }

  async function changeLogPosition(pool: typeof db.pools.old): Promise<string> {
    const { rows } = await pool.query<{ position: string }>(
      `SELECT last_value::text AS position FROM ${HELPER_SCHEMA}.change_log_id_seq`,
    );
    return rows[0]!.position;
  }

  function startWriters(count: number): { writers: Writer[]; stop: () => Promise<void> } {
    let stopping = false;
    const writers: Writer[] = [];
    const loops = Array.from({ length: count }, (_, i) => {
      const writer: Writer = { id: i + 1, acknowledged: 0, failures: [], longestMs: 0 };
      writers.push(writer);
      const router = routers[i % routers.length]!;
      return (async () => {
        while (!stopping) {
          const started = Date.now();
          try {
            if (i % 2 === 0) {
              await router.query(`UPDATE ${name} SET customer_id = customer_id + 1 WHERE id = $1`, [
                writer.id,
              ]);
            } else {
              const client = await router.connect();
              try {
                await client.query('BEGIN');
                await client.query(`UPDATE ${name} SET customer_id = customer_id + 1 WHERE id = $1`, [
                  writer.id,
                ]);
                await client.query('COMMIT');
              } finally {
                client.release();
              }
            }
            writer.acknowledged++;
          } catch (err) {
            writer.failures.push((err as Error).message);
          }
          writer.longestMs = Math.max(writer.longestMs, Date.now() - started);
        }
      })();
    });
    return {
      writers,
      stop: async () => {
        stopping = true;
        await Promise.all(loops);
      },
    };
  }

  async function counters(pool: typeof db.pools.old): Promise<Map<number, number>> {
    const { rows } = await pool.query<{ id: string; n: string }>(
      `SELECT id, customer_id AS n FROM ${name} WHERE id <= 20`,
    );
    return new Map(rows.map((row) => [Number(row.id), Number(row.n)]));
  }

  it('holds writes, flips authority to new, and loses or doubles none of them', async () => {
    const first = await startRouter('switch', {
      old: { connectionString: db.urls.old, max: 6 },
      new: { connectionString: db.urls.new, max: 6 },
      stageWatcher: { pollMs: 200, heartbeatMs: 500 },
    });
    routers.push(first.router);
    const second = await startRouter('switch', {
      migration: first.migration,
      old: { connectionString: db.urls.old, max: 6 },
      new: { connectionString: db.urls.new, max: 6 },
      stageWatcher: { pollMs: 200, heartbeatMs: 500 },
    });
    routers.push(second.router);
    const migration = first.migration;
    await moveStage(db.pools.old, migration, routers, 'live', 50);
    const initial = await counters(db.pools.old);
    const load = startWriters(6);
    // The writers stop on the way out whatever happens: a failed assertion must not leave them running.
    try {
      await waitFor('writes before the switch', () =>
        Promise.resolve(load.writers.every((w) => w.acknowledged >= 10)),
      );

      // The switch: fence, every live router acknowledges, drain, sequences, flip.
      const acks = await raiseFence(migration, 30_000);
      assert.deepEqual(acks.missing, []);
      assert.deepEqual(acks.acknowledged.sort(), routers.map((router) => router.routerId).sort());
      const atAck = await changeLogPosition(db.pools.old);
      const acknowledgedAtAck = load.writers.map((w) => w.acknowledged);
      await drainOldToNew();
      await run(activities.advanceSequences, { from: 'old', to: 'new', tables: [table] });
      assert.equal(
        await changeLogPosition(db.pools.old),
        atAck,
        'no write reached old after the acknowledgements',
      );
      assert.deepEqual(
        load.writers.map((w) => w.acknowledged),
        acknowledgedAtAck,
        'no write completed while fenced',
      );
      await setStage(db.pools.old, migration, { stage: 'switched' });

      await waitFor('writes after the switch', () =>
        Promise.resolve(load.writers.every((w, i) => w.acknowledged >= acknowledgedAtAck[i]! + 10)),
      );
    } finally {
      await load.stop();
    }
    assert.deepEqual(
      load.writers.flatMap((w) => w.failures),
      [],
      'no write failed',
    );
    const onNew = await counters(db.pools.new);
    const onOld = await counters(db.pools.old);
    for (const writer of load.writers) {
      const expected = initial.get(writer.id)! + writer.acknowledged;
      assert.equal(onNew.get(writer.id), expected, `writer ${writer.id} on new`);
      assert.equal(onOld.get(writer.id), expected, `writer ${writer.id} mirrored back to old`);
    }
    const comparison = await compareTables(db.pools.old, db.pools.new, table, ['id']);
    assert.equal(comparison.differenceCount, 0, JSON.stringify(comparison.differences));
    const longest = Math.max(...routers.map((router) => router.metrics.longestFenceWaitSeconds));
    console.log(
      `switch: ${load.writers.reduce((sum, w) => sum + w.acknowledged, 0)} writes by 6 writers through 2 routers, none failed; longest wait at the fence ${(longest * 1000).toFixed(0)} ms, longest write ${Math.max(...load.writers.map((w) => w.longestMs))} ms`,
    );
  });

  it('a router holding a transaction open never acknowledges: the switch gives up and everyone stays where they were', async () => {
    const stubborn = routers[1]!;
    const migration = stubborn.options.migration;
    await moveStage(db.pools.old, migration, routers, 'live', 50);
    const client = await stubborn.connect();
    let released = false;
    try {
      await client.query('BEGIN');
      await client.query(`UPDATE ${name} SET note = 'held open' WHERE id = 20`);
      const acks = await raiseFence(migration, 2000);
      assert.deepEqual(acks.missing, [stubborn.routerId]);
      assert.deepEqual(acks.acknowledged, [routers[0]!.routerId]);
      // A write on the other router waits at the fence meanwhile...
      const waiting = routers[0]!.query(`UPDATE ${name} SET note = 'waited' WHERE id = 19`);
      // ...and the switch aborts: the fence lifts, authority stays with old.
      await setStage(db.pools.old, migration, { stage: 'live', readPercent: 50 });
      await waiting;
      await client.query('COMMIT');
      client.release();
      released = true;
    } finally {
      // On a failure: no fence left up, no transaction left open (the session is closed).
      if (!released) {
        await setStage(db.pools.old, migration, { stage: 'live', readPercent: 50 });
        client.release(true);
      }
    }
    const held = await db.pools.old.query<{ note: string }>(
      `SELECT note FROM ${name} WHERE id IN (19, 20) ORDER BY id`,
    );
    assert.deepEqual(
      held.rows.map((row) => row.note),
      ['waited', 'held open'],
    );
    await drainOldToNew();
    const comparison = await compareTables(db.pools.old, db.pools.new, table, ['id']);
    assert.equal(comparison.differenceCount, 0, JSON.stringify(comparison.differences));
  });
});
