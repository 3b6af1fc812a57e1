// The write switch (hazards 7 and 9) as the migration runs it, writeSwitchWorkflow on a real Temporal
// server, with writes running through two routers the whole time: routers hold new writes at the
// fence (they wait, none fails) and finish the ones in flight; old is guarded, the change log drains,
// sequences move, authority flips to new, and the held writes land there; reconciliation carries
// them back to old (the routers no longer write old: only the migration's role may). No write is
// lost or applied twice: each writer counts its own row up once per acknowledged write. A
// router holding a transaction open never acknowledges, so the switch aborts and everyone stays on
// old, which still takes writes. A router whose process died (its session on old ended) is not
// waited for.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../../activities';
import type { TableRef } from '../../model/tables';
import { ConnectionPools } from '../../db/pools';
import { quoteTable } from '../../db/sql';
import { compareTables } from '../../db/verifier';
import { resolveConnections } from '../../config/connections';
import type { MigrationRouter } from '../../router';
import type { ServerBinding } from '../../model/servers';
import { writeSwitchWorkflow } from '../../workflows';
import { reconciliationWorkflowId } from '../../model/ids';
import { stopSignal } from '../../workflows/messages';
import type { WriteSwitchResult } from '../../model/messages';
import { startRunningWorker } from '../harness/backfill';
import { freshDatabases, moveStage, routedTable, startRouter, testMigration } from '../harness/router';
import { installQuietRuntime, testSite } from '../harness/servers';
import { workflowsPath } from '../harness/workflow-histories';
import { waitFor } from '../harness/wait';
import { startStageWatcherProcess } from '../harness/stage-watchers';
import { listRouters } from '../../db/stage-store';
import { drainUntilEmpty, runActivity } from '../harness/activity';

installQuietRuntime();

interface Writer {
  id: number;
  acknowledged: number;
  failures: string[];
  longestMs: number;
}

describe('the write switch', () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  let migrationPools: ConnectionPools;
  let activities: ReturnType<typeof createActivities>;
  let table: TableRef;
  let name: string;
  const routers: MigrationRouter[] = [];
  let worker: Awaited<ReturnType<typeof startRunningWorker>>;
  let migration: string;
  let servers: ServerBinding;

  before(async () => {
    db = await freshDatabases('router_switch');
    migrationPools = new ConnectionPools(resolveConnections(testSite('unused'), db.env));
    activities = createActivities({ pools: migrationPools });
    migration = testMigration('switch');
    table = await routedTable(db.pools.old, db.pools.new, 'switched', 20, migration, db.env);
    servers = await activities.bindServers({ migration });
    name = quoteTable(table);
    worker = await startRunningWorker('write-switch', undefined, db.env);
    for (let i = 0; i < 2; i++) {
      const started = await startRouter('switch', {
        migration,
        old: { connectionString: db.urls.old, max: 6 },
        new: { connectionString: db.urls.new, max: 6 },
        stageWatcher: { pollMs: 200, heartbeatMs: 500 },
      });
      routers.push(started.router);
    }
  });

  after(async () => {
    await worker.stop();
    await Promise.all(routers.map((router) => router.end()));
    await migrationPools.end();
    await db.end();
  });

  const drainOldToNew = () => drainUntilEmpty(activities, { migration, servers, from: 'old', to: 'new' });

  /** Runs the write switch of the test's migration from `live` 50% and replays its history. */
  async function switchWrites(label: string, fenceTimeoutMs: number): Promise<WriteSwitchResult> {
    const handle = await worker.client.workflow.start(writeSwitchWorkflow, {
      taskQueue: worker.taskQueue,
      workflowId: `${migration}-${label}`,
      args: [
        {
          migration,
          servers,
          tables: [table],
          from: { stage: 'live', readPercent: 50 },
          fenceTimeoutMs,
          reconciliationWorkflowId: reconciliationWorkflowId(migration),
        },
      ],
    });
    const result = await handle.result();
    await Worker.runReplayHistory(
      { workflowsPath, replayName: handle.workflowId },
      await handle.fetchHistory(),
      handle.workflowId,
    );
    return result;
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

  it('a router holding a transaction open never acknowledges: the switch aborts and old keeps taking writes', async () => {
    const [patient, stubborn] = routers as [MigrationRouter, MigrationRouter];
    await moveStage(db.pools.old, migration, routers, 'live', 50);
    const client = await stubborn.connect();
    try {
      await client.query('BEGIN');
      await client.query(`UPDATE ${name} SET note = 'held open' WHERE id = 20`);
      // A write on the other router meets the fence while the switch waits, and goes on afterwards.
      const switching = switchWrites('abort', 2000);
      await waitFor('the fence', () => Promise.resolve(patient.stage.fenced));
      const waiting = patient.query(`UPDATE ${name} SET note = 'waited' WHERE id = 19`);
      const result = await switching;
      assert.equal(result.switched, false);
      assert.deepEqual(result.missing, [stubborn.routerId]);
      assert.match(result.reason ?? '', /did not acknowledge the write fence in time/);
      await waiting;
      await client.query('COMMIT');
    } finally {
      client.release();
    }
    assert.equal(patient.stage.stage, 'live');
    assert.equal(patient.stage.fenced, false);
    await db.pools.old.query(`UPDATE ${name} SET note = 'old is not guarded' WHERE id = 18`);
    const notes = await db.pools.old.query<{ note: string }>(
      `SELECT note FROM ${name} WHERE id IN (18, 19, 20) ORDER BY id`,
    );
    assert.deepEqual(
      notes.rows.map((row) => row.note),
      ['old is not guarded', 'waited', 'held open'],
    );
    await drainOldToNew();
    const comparison = await compareTables(db.pools.old, db.pools.new, table, ['id']);
    assert.equal(comparison.differenceCount, 0, JSON.stringify(comparison.differences));
  });

  it('a router whose process died is not waited for at the fence: its session on old has ended', async () => {
    const routerId = `${migration}-killed`;
    const dead = startStageWatcherProcess(migration, routerId, 'listen', { ...process.env, ...db.env });
    try {
      await waitFor('the router to start', () => Promise.resolve(dead.seen.some((seen) => seen.ready)));
      await dead.stop('SIGKILL');
      // Its last heartbeat is seconds old: by heartbeats alone it would count as live for 15 s.
      await waitFor(
        'the killed router to show as gone',
        () => listRouters(db.pools.old, migration),
        (listed) => listed.some((router) => router.routerId === routerId && router.sessionGone),
      );
      const at = { servers, connection: 'old' as const, migration, stage: 'live' as const, readPercent: 50 };
      const fence = await runActivity(activities.setMigrationStage, { ...at, fenced: true });
      const acks = await runActivity(activities.awaitRouterFence, {
        servers,
        connection: 'old',
        migration,
        version: fence.version,
        timeoutMs: 3000,
      });
      await runActivity(activities.setMigrationStage, at);
      assert.deepEqual(acks.missing, []);
      assert.deepEqual(acks.acknowledged.sort(), routers.map((router) => router.routerId).sort());
    } finally {
      await dead.stop('SIGKILL');
      await db.pools.old.query(`DELETE FROM live_migrate.routers WHERE router_id = $1`, [routerId]);
    }
  });

  it('holds writes at the fence, flips authority to new, and loses or doubles none of them', async () => {
    await moveStage(db.pools.old, migration, routers, 'live', 50);
    const initial = await counters(db.pools.old);
    const load = startWriters(6);
    // A client checked out before the switch and idle across it.
    const idle = await routers[0]!.connect();
    let result: WriteSwitchResult;
    let acknowledgedBefore: number[];
    // The writers stop on the way out whatever happens: a failed assertion must not leave them running.
    try {
      await waitFor('writes before the switch', () =>
        Promise.resolve(load.writers.every((w) => w.acknowledged >= 10)),
      );
      acknowledgedBefore = load.writers.map((w) => w.acknowledged);
      result = await switchWrites('switch', 30_000);
      assert.equal(result.switched, true, result.reason);
      await waitFor('writes after the switch', () =>
        Promise.resolve(load.writers.every((w, i) => w.acknowledged >= acknowledgedBefore[i]! + 10)),
      );
      // Its reads now come from new, the authoritative side, not from its old session.
      await db.pools.new.query(`UPDATE ${name} SET note = 'only on new' WHERE id = 17`);
      const read = await idle.query<{ note: string }>(`SELECT note FROM ${name} WHERE id = 17`);
      assert.equal(read.rows[0]?.note, 'only on new');
      await idle.query(`UPDATE ${name} SET note = 'written by the idle client' WHERE id = 17`);
      assert.equal(idle.side, 'new', 'its session moved to new for the write');
    } finally {
      idle.release();
      await load.stop();
    }
    assert.deepEqual(
      load.writers.flatMap((w) => w.failures),
      [],
      'no write failed',
    );
    const onNew = await counters(db.pools.new);
    for (const writer of load.writers) {
      const expected = initial.get(writer.id)! + writer.acknowledged;
      assert.equal(onNew.get(writer.id), expected, `writer ${writer.id} on new`);
    }
    // Reconciliation, running new → old since the flip, carries every write back to old.
    await waitFor(
      "the reverse sync to carry new's writes to old",
      async () => (await compareTables(db.pools.old, db.pools.new, table, ['id'])).differenceCount,
      (differences) => differences === 0,
    );
    const onOld = await counters(db.pools.old);
    for (const writer of load.writers) {
      const expected = initial.get(writer.id)! + writer.acknowledged;
      assert.equal(onOld.get(writer.id), expected, `writer ${writer.id} carried back to old`);
    }
    // Old refuses everyone but the migration's role now (hazard 7): a writer that bypasses the routers.
    await assert.rejects(
      db.pools.old.query(`UPDATE ${name} SET note = 'cron job' WHERE id = 1`),
      /refused here: migration .* has moved this table's writes to the other database/,
    );
    await worker.client.workflow.getHandle(reconciliationWorkflowId(migration)).signal(stopSignal);
    console.log(
      `switch: ${load.writers.reduce((sum, w) => sum + w.acknowledged, 0)} writes by 6 writers through 2 routers, none failed; ` +
        `fence up ${result!.fencedMs} ms (workflow time); longest write, its wait at the fence included, ` +
        `${Math.max(...load.writers.map((w) => w.longestMs))} ms; ${result!.changesDrained} changes drained`,
    );
  });
});
