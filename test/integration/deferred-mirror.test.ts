// A write answers the application after the authoritative commit while no read of the application
// can see the other side (`dual_write`, `shadow`); its mirror follows off the request's path, and a
// shadow read compares new once it landed. On real PostgreSQL:
// - the write returned while its mirror was held, the mirror still counted as a write in flight, so
//   a raised write fence was acknowledged only after it landed, and new then equals old;
// - beyond `maxPendingMirrors`, and in `live` (reads on new must see their own writes), and with
//   `awaitMirrors`, a write waits for its own mirror;
// - concurrent writers through two routers with deferred mirrors racing on the same rows, and a
//   writer bypassing them: once the mirrors settle, every key where new differs from old still has
//   its change log entry, and the routers' own writes are on new, row by row.
// No Temporal here: an installed Temporal runtime would keep the test process from exiting.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { HELPER_SCHEMA } from '../../db/helper-schema';
import { quoteTable } from '../../db/sql';
import { listRouters, setStage } from '../../db/stage-store';
import { compareTables } from '../../db/verifier';
import type { TableRef } from '../../model/tables';
import { seededRandom } from '../../provision/write-load';
import type { MigrationRouter } from '../../router';
import {
  assertTablesEqual,
  freshDatabases,
  moveStage,
  routedTable,
  startRouter,
  testMigration,
} from '../harness/router';
import { waitFor, watch } from '../harness/wait';

/** A gate the router's mirrors wait at (after the authoritative commit), opened by the test. */
class MirrorGate {
  reached = 0;
  private open: Promise<void> = Promise.resolve();
  private release: () => void = () => undefined;

  /** Closes the gate (a mirror already waiting at it goes on). */
  close(): void {
    this.release();
    this.open = new Promise((resolve) => (this.release = resolve));
  }

  lift(): void {
    this.release();
  }

  readonly hook = async (): Promise<void> => {
    this.reached++;
    await this.open;
  };
}

// Bounded: a failure must not leave the file waiting on a held mirror until the runner's timeout.
describe('deferred mirrors', { timeout: 180_000 }, () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  let migration: string;
  let table: TableRef;
  let name: string;
  const gate = new MirrorGate();
  let router: MigrationRouter;

  before(async () => {
    db = await freshDatabases('deferred_mirror');
    migration = testMigration('deferred');
    table = await routedTable(db.pools.old, db.pools.new, 'deferred', 20, migration, db.env);
    name = quoteTable(table);
    ({ router } = await startRouter('deferred', {
      migration,
      old: { connectionString: db.urls.old, max: 6 },
      new: { connectionString: db.urls.new, max: 6 },
      mirrorTimeoutMs: 30_000,
      maxPendingMirrors: 1,
      testHooks: { afterAuthoritativeCommit: gate.hook },
    }));
  });

  after(async () => {
    gate.lift();
    await router?.end();
    await db?.end();
  });

  const noteOn = async (side: 'old' | 'new', id: number) =>
    (await db.pools[side].query<{ note: string | null }>(`SELECT note FROM ${name} WHERE id = $1`, [id]))
      .rows[0]?.note;

  /** Runs `sql` through the router with its mirror held at the gate: the write must not answer first. */
  async function writeThatWaitsForItsMirror(sql: string): Promise<void> {
    gate.close();
    const reachedBefore = gate.reached;
    const write = watch(router.query(sql));
    await waitFor('the mirror to start', () => Promise.resolve(gate.reached === reachedBefore + 1));
    assert.equal(write.settled(), false);
    assert.equal(router.pendingMirrorCount, 0);
    gate.lift();
    await write.promise;
  }

  it('dual_write: the write answers before its mirror, which holds the write fence until it lands', async () => {
    await moveStage(db.pools.old, migration, [router], 'dual_write');
    gate.close();
    const reachedBefore = gate.reached;
    await router.query(`UPDATE ${name} SET note = 'deferred' WHERE id = 1`);
    assert.equal(router.pendingMirrorCount, 1, 'the mirror is under way');
    await waitFor('the mirror to reach the gate', () => Promise.resolve(gate.reached === reachedBefore + 1));
    assert.equal(await noteOn('old', 1), 'deferred');
    assert.notEqual(await noteOn('new', 1), 'deferred', 'the write answered before its mirror landed');
    assert.equal(router.writesInFlight, 1, 'the pending mirror counts as a write in flight');
    const gauge = () =>
      router.metrics.registry.getSingleMetricAsString('live_migrate_router_pending_mirrors');
    assert.match(await gauge(), /^live_migrate_router_pending_mirrors\S* 1$/m, 'the gauge shows it');

    const fenced = await setStage(db.pools.old, migration, { stage: 'dual_write', fenced: true });
    try {
      await waitFor('the router to see the fence', () =>
        Promise.resolve(router.stage.version >= fenced.version),
      );
      const seen = await listRouters(db.pools.old, migration);
      assert.notEqual(
        seen.find((listed) => listed.routerId === router.routerId)?.fenceAcknowledged,
        fenced.version,
        'no acknowledgement while a mirror is pending',
      );
      assert.equal(router.writesInFlight, 1);

      gate.lift();
      await router.mirrorsSettled();
      assert.equal(await noteOn('new', 1), 'deferred');
      assert.match(await gauge(), /^live_migrate_router_pending_mirrors\S* 0$/m);
      await waitFor(
        'the fence to be acknowledged once the mirror landed',
        () => listRouters(db.pools.old, migration),
        (listed) =>
          listed.some((r) => r.routerId === router.routerId && r.fenceAcknowledged === fenced.version),
      );
    } finally {
      // Whatever failed above, the next tests find the gate open and the fence lifted.
      gate.lift();
      await moveStage(db.pools.old, migration, [router], 'dual_write');
    }
    await assertTablesEqual(db.pools.old, db.pools.new, table, 'after the deferred mirror');
  });

  it('beyond maxPendingMirrors a write waits for its own mirror', async () => {
    gate.close();
    const reachedBefore = gate.reached;
    await router.query(`UPDATE ${name} SET note = 'first' WHERE id = 2`);
    const second = watch(router.query(`UPDATE ${name} SET note = 'second' WHERE id = 3`));
    await waitFor('the second mirror to start', () => Promise.resolve(gate.reached === reachedBefore + 2));
    assert.equal(second.settled(), false, 'the second write waits: one mirror is already pending');
    assert.equal(await noteOn('old', 3), 'second', 'it committed on old');
    gate.lift();
    await second.promise;
    assert.equal(await noteOn('new', 3), 'second', 'it returned with its mirror landed');
    await router.mirrorsSettled();
    await assertTablesEqual(db.pools.old, db.pools.new, table, 'after the waited mirror');
  });

  it('live: a write waits for its mirror, so a read on new sees it', async () => {
    await moveStage(db.pools.old, migration, [router], 'live', 100);
    await writeThatWaitsForItsMirror(`UPDATE ${name} SET note = 'live' WHERE id = 4`);
    const read = await router.query<{ note: string }>(`SELECT note FROM ${name} WHERE id = 4`);
    assert.equal(read.rows[0]?.note, 'live', 'the read (on new) sees the write');
    await moveStage(db.pools.old, migration, [router], 'dual_write');
  });

  it('shadow: the write answers before its mirror, which holds the fence the step into live raises, and a shadow read compares new once it landed', async () => {
    const shadowGate = new MirrorGate();
    const { router: comparing } = await startRouter('deferred', {
      migration,
      old: { connectionString: db.urls.old, max: 4 },
      new: { connectionString: db.urls.new, max: 4 },
      mirrorTimeoutMs: 30_000,
      shadow: { sampleRate: 1 },
      testHooks: { afterAuthoritativeCommit: shadowGate.hook },
    });
    try {
      await moveStage(db.pools.old, migration, [router, comparing], 'shadow');
      shadowGate.close();
      await comparing.query(`UPDATE ${name} SET note = 'shadowed' WHERE id = 9`);
      assert.equal(comparing.pendingMirrorCount, 1, 'the write answered, its mirror is under way');
      assert.notEqual(await noteOn('new', 9), 'shadowed');
      const read = await comparing.query<{ note: string }>(`SELECT note FROM ${name} WHERE id = 9`);
      assert.equal(read.rows[0]?.note, 'shadowed', 'the application reads old');
      // Before reads go to new the migration raises the fence on shadow: this router acknowledges
      // only once its trailing mirror landed.
      const fenced = await setStage(db.pools.old, migration, { stage: 'shadow', fenced: true });
      await waitFor('the routers to see the fence', () =>
        Promise.resolve(router.stage.version >= fenced.version && comparing.stage.version >= fenced.version),
      );
      const acknowledged = async () =>
        (await listRouters(db.pools.old, migration)).filter((r) => r.fenceAcknowledged === fenced.version);
      await waitFor('the idle router to acknowledge', async () =>
        (await acknowledged()).some((r) => r.routerId === router.routerId),
      );
      assert.equal(
        (await acknowledged()).some((r) => r.routerId === comparing.routerId),
        false,
        'no acknowledgement while a mirror trails',
      );
      shadowGate.lift();
      await comparing.mirrorsSettled();
      assert.equal(await noteOn('new', 9), 'shadowed');
      await waitFor('the fence to be acknowledged once the mirror landed', async () =>
        (await acknowledged()).some((r) => r.routerId === comparing.routerId),
      );
      const count = (result: string) => comparing.metrics.count('shadow', result);
      const compared = async () =>
        (await count('match')) + (await count('settled')) + (await count('mismatch'));
      await waitFor('the shadow comparison', async () => (await compared()) === 1);
      // Compared before the mirror landed, it would have found new different and settled on a later
      // round (or counted a mismatch).
      assert.equal(await count('match'), 1);
    } finally {
      shadowGate.lift();
      await comparing.end();
      await moveStage(db.pools.old, migration, [router], 'dual_write');
    }
  });

  it('awaitMirrors: every write waits for its mirror, also in dual_write', async () => {
    const { router: patient } = await startRouter('deferred', {
      migration,
      old: { connectionString: db.urls.old, max: 2 },
      new: { connectionString: db.urls.new, max: 2 },
      mirrorTimeoutMs: 30_000,
      awaitMirrors: true,
      testHooks: { afterAuthoritativeCommit: gate.hook },
    });
    try {
      gate.close();
      const reachedBefore = gate.reached;
      const write = watch(patient.query(`UPDATE ${name} SET note = 'patient' WHERE id = 5`));
      await waitFor('the mirror to start', () => Promise.resolve(gate.reached === reachedBefore + 1));
      assert.equal(write.settled(), false);
      gate.lift();
      await write.promise;
      assert.equal(await noteOn('new', 5), 'patient');
    } finally {
      gate.lift();
      await patient.end();
    }
  });

  it('dual_write: writes whose mirrors come while one runs go in one batch after it, the later value last', async () => {
    // A router of its own whose mirror syncs wait, after reading old, at a gate the test opens.
    const held = new MirrorGate();
    let committed = 0;
    const { router: batcher } = await startRouter('deferred', {
      migration,
      old: { connectionString: db.urls.old, max: 6 },
      new: { connectionString: db.urls.new, max: 6 },
      mirrorTimeoutMs: 30_000,
      testHooks: {
        afterMirrorRead: held.hook,
        // Right before a write's mirror starts (its keys read from its session).
        afterAuthoritativeCommit: () => Promise.resolve(void committed++),
      },
    });
    try {
      await moveStage(db.pools.old, migration, [batcher], 'dual_write');
      held.close();
      const syncsBefore = held.reached;
      await batcher.query(`UPDATE ${name} SET note = 'first' WHERE id = 15`);
      await waitFor('the first mirror to read old', () => Promise.resolve(held.reached === syncsBefore + 1));
      // While it waits (holding key 15's lock on new, with 'first' read): the same key again and
      // two others. Each write answers at once; their mirrors wait for the running one.
      await batcher.query(`UPDATE ${name} SET note = 'second' WHERE id = 15`);
      await batcher.query(`UPDATE ${name} SET note = 'batched' WHERE id = 16`);
      await batcher.query(`DELETE FROM ${name} WHERE id = 17`);
      assert.equal(batcher.pendingMirrorCount, 4);
      await waitFor('the three later mirrors to start', () => Promise.resolve(committed === 4));
      assert.equal(held.reached, syncsBefore + 1, 'no other sync while the first runs');
      held.lift();
      await batcher.mirrorsSettled();
      // The first sync, then one batch of the three writes: with a deleted key it is tried under
      // the keys' locks, then again under the table's lock. One by one they took five.
      assert.equal(held.reached - syncsBefore, 3, 'the three later writes mirrored in one batch');
      assert.equal(await noteOn('new', 15), 'second', 'the later value landed last');
      assert.equal(await noteOn('new', 16), 'batched');
      assert.equal(await noteOn('new', 17), undefined, 'the delete landed');
      assert.equal(await batcher.metrics.count('mirrors', 'mirrored'), 4, 'counted per write');
      await waitFor('the batch to forget its change log entries', async () => {
        const { rows: left } = await db.pools.old.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM ${HELPER_SCHEMA}.change_log
            WHERE table_name = $1 AND key->>0 IN ('15', '16', '17')`,
          [table.table],
        );
        return left[0]!.n === 0;
      });
      await assertTablesEqual(db.pools.old, db.pools.new, table, 'after the batch');
    } finally {
      held.lift();
      await batcher.end();
    }
  });

  it('racing routers with deferred mirrors and a bypassing writer: every difference keeps its change log entry, and the routers’ writes land in order', async () => {
    const racers: MigrationRouter[] = [];
    for (let i = 0; i < 2; i++) {
      racers.push(
        (
          await startRouter('deferred', {
            migration,
            old: { connectionString: db.urls.old, max: 4 },
            new: { connectionString: db.urls.new, max: 4 },
            mirrorTimeoutMs: 30_000,
          })
        ).router,
      );
    }
    try {
      await moveStage(db.pools.old, migration, racers, 'dual_write');
      await db.pools.old.query(`DELETE FROM ${HELPER_SCHEMA}.change_log`);
      const random = seededRandom(11);
      const bypassed = new Set<number>();
      for (let round = 0; round < 20; round++) {
        const ids = [6, 7, 8];
        await Promise.all([
          ...racers.flatMap((racer, r) =>
            [0, 1, 2].map(async (w) => {
              const id = ids[Math.floor(random() * ids.length)]!;
              const tag = `r${round}-${r}${w}`;
              if (random() < 0.85) {
                await racer.query(
                  `UPDATE ${name} SET note = $1, amount = coalesce(amount, 0) + 1 WHERE id = $2`,
                  [tag, id],
                );
              } else {
                await racer.query(`DELETE FROM ${name} WHERE id = $1`, [id]);
                await racer.query(
                  `INSERT INTO ${name} (id, customer_id, status, created_at) VALUES ($1, 1, $2, now()) ON CONFLICT (id) DO NOTHING`,
                  [id, tag],
                );
              }
            }),
          ),
          (async () => {
            if (round % 4 !== 0) return;
            // The bypassing writer touches a row of its own: only reconciliation can bring it.
            const id = 10 + round / 4;
            bypassed.add(id);
            await db.pools.old.query(`UPDATE ${name} SET note = 'bypassed' WHERE id = $1`, [id]);
          })(),
        ]);
      }
      await Promise.all(racers.map((racer) => racer.mirrorsSettled()));
      const comparison = await compareTables(db.pools.old, db.pools.new, table, ['id']);
      const differing = new Set(
        comparison.differences.map((difference) => Number(difference.key.replace(/[()]/g, ''))),
      );
      assert.deepEqual([...differing].sort(), [...bypassed].sort(), 'only the bypassed rows differ');
      const { rows } = await db.pools.old.query<{ key: string[] }>(
        `SELECT key FROM ${HELPER_SCHEMA}.change_log WHERE table_name = $1`,
        [table.table],
      );
      const logged = new Set(rows.map((row) => Number(row.key[0])));
      for (const id of differing)
        assert.ok(logged.has(id), `row ${id} differs and its change log entry is kept`);
      for (const racer of racers) {
        for (const result of ['failed', 'timed_out', 'circuit_open']) {
          assert.equal(await racer.metrics.count('mirrors', result), 0, `no mirror ${result}`);
        }
      }
    } finally {
      await Promise.all(racers.map((racer) => racer.end()));
    }
  });
});
