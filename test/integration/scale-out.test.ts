// Several workers share one migration (issue 13, item 8): three worker processes poll one task queue
// while two application processes write through their routers; each worker copies chunks of the
// backfill (counted from its own log), and a partition's batches are not tied to one worker. One is
// SIGKILLed mid-backfill, and the one running the write switch's own activity (moveWriteAuthority,
// caught waiting for a lock the test holds on old's table while every router's writes wait at the
// fence) is SIGKILLed inside it. The switch's next attempt runs on another worker and moves
// authority; new equals old row by row, and every write the load was told succeeded is on both sides
// exactly once (hazard 8 with a crash in its middle).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { MigrationControl, startMigration } from '../../client/migrations';
import { parseMigrationConfig } from '../../config/load';
import { quoteTable } from '../../db/sql';
import { compareTables } from '../../db/verifier';
import type { TableRef } from '../../model/tables';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import {
  assertLoadLanded,
  loadCounters,
  startLoadProcess,
  type LoadProcess,
} from '../harness/load-processes';
import type { LoadWriterReport } from '../harness/router-load-process';
import { freshDatabases } from '../harness/router';
import { servers, temporalClient } from '../harness/servers';
import { waitFor } from '../harness/wait';
import { startWorkerProcess, type WorkerProcess } from '../harness/worker-process';

/** A write refused by the fence after waiting its time: the application was told, nothing was written. */
const FENCE_TIMEOUT = /waited \d+ ms for the migration's write switch/;

describe('three workers on one task queue', () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  const workers: WorkerProcess[] = [];
  const loads: LoadProcess[] = [];
  const table: TableRef = { schema: 'public', table: 'shared' };
  const name = quoteTable(table);
  const rows = 30_000;
  let locker: pg.Client | undefined;

  before(async () => {
    db = await freshDatabases('scale_out');
    await db.pools.old.query(sampleTableDdl(table));
    await db.pools.new.query(sampleTableDdl(table));
    await seedSampleRows(db.pools.old, table, rows);
  });

  after(async () => {
    for (const load of loads) load.kill();
    await Promise.all(workers.map((worker) => worker.kill('SIGKILL')));
    await locker?.end().catch(() => undefined);
    await db.end();
  });

  /** The chunk activities a worker process finished, from its own log. */
  const batchesOf = (worker: WorkerProcess) =>
    worker.lines.filter((line) => line.activityType === 'copyChunks' && line.msg === 'Activity completed');
  const copiedBy = (worker: WorkerProcess) => batchesOf(worker).length;
  /** How many of the workers copied batches of each partition (by its workflow id). */
  const workersPerPartition = (workers: WorkerProcess[]) => {
    const seen = new Map<string, Set<number>>();
    workers.forEach((worker, index) => {
      for (const line of batchesOf(worker)) {
        const partition = String(line.workflowId);
        seen.set(partition, (seen.get(partition) ?? new Set()).add(index));
      }
    });
    return new Map([...seen].map(([partition, by]) => [partition, by.size]));
  };

  it('each copies chunks; one killed mid-backfill and one inside the write switch; new equals old', async () => {
    const taskQueue = `scale-out-${db.urls.old.split('_').pop()}`;
    const start = () => {
      const worker = startWorkerProcess(taskQueue, { ...db.env, LOG_LEVEL: 'debug' });
      workers.push(worker);
      return worker;
    };
    const first = [start(), start(), start()];
    // Each polls before the migration starts: on a busy machine a worker slow to start (bundling its
    // workflows) could otherwise find the copy shared out between the other two, or done.
    await waitFor('the three workers to run', () =>
      Promise.resolve(first.every((worker) => worker.lines.some((line) => line.state === 'RUNNING'))),
    );
    const client = await temporalClient();
    let reports: LoadWriterReport[] = [];
    try {
      const migration = `scale-out-${taskQueue.split('-').pop()}`;
      const config = parseMigrationConfig({
        name: migration,
        tables: ['public.shared'],
        chunkSize: 200,
        partitions: 3,
        chunksInFlight: 2,
        chunksPerActivity: 1,
        // The copy's own pace, so that it lasts while workers die: the latency brake would follow
        // the test machine's load instead (it is tested in latency-brake.test.ts).
        throttle: { maxRowsPerSecond: 3000, latencyTarget: null },
        temporal: { taskQueue },
        cutover: {
          readSteps: [100],
          stepSoak: 300,
          soak: '1s',
          approvals: ['switched'],
          // Every load row is rewritten without pause (see migration-end-to-end.test.ts).
          gates: { maxReconciliationBacklog: 5000, maxLatencyRatio: 50, maxShadowMismatchRate: 1 },
        },
        verification: { settle: 100 },
        queryBenchmark: { topStatements: 0 },
      });
      const initial = await loadCounters(db.pools.old, name, 4);
      assert.equal((await startMigration(client, config, taskQueue)).started, true);
      const control = new MigrationControl(client, migration);
      const env = { ...db.env, TEMPORAL_ADDRESS: servers.temporalAddress };
      loads.push(await startLoadProcess(env, migration, name, 1, 2));
      loads.push(await startLoadProcess(env, migration, name, 3, 2));

      // Mid-backfill: every worker has copied chunks; one of them dies.
      await waitFor(
        'each of the three workers to copy chunks',
        () => Promise.resolve(first.map(copiedBy)),
        (counts) => counts.every((n) => n >= 2),
      );
      const status = await control.status();
      assert.equal(status.tables[0]?.backfillDone, false, 'still backfilling when the first worker dies');
      console.log(`  chunks copied by each worker before the kill: ${first.map(copiedBy).join(', ')}`);
      // A partition's batches go to whichever worker is free, not only the one its workflow runs on
      // (dispatched eagerly, each partition's copy stayed on one worker, and with two partitions on
      // one worker the third copied nothing).
      const spread = workersPerPartition(first);
      assert.ok(
        [...spread.values()].some((workers) => workers > 1),
        `some partition copied by more than one worker: ${JSON.stringify([...spread])}`,
      );
      await first[0]!.kill('SIGKILL');
      start();

      // Before the switch: a lock on old's table that writes and reads pass but the switch's guard
      // (a trigger) waits for, so its activity is surely in flight when its worker dies.
      const held = await waitFor(
        'the approval before the switch',
        () => control.status(),
        (s) => s.held?.kind === 'approval' || s.error !== null,
        3000,
      );
      assert.equal(held.error, null);
      assert.equal(held.step, 'live 100%');
      locker = new pg.Client({ connectionString: db.urls.old });
      await locker.connect();
      await locker.query('BEGIN');
      await locker.query(`LOCK TABLE ${name} IN SHARE UPDATE EXCLUSIVE MODE`);
      await control.approve('test');
      await waitFor('the switch to wait for the lock on old', async () => {
        const { rows: waiting } = await db.pools.old.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
            WHERE application_name = 'pg-live-migrate old' AND wait_event_type = 'Lock'`,
        );
        return (waiting[0]?.n ?? 0) > 0;
      });
      const pending = (await client.workflow.getHandle(`migration-${migration}`).describe()).raw
        .pendingActivities;
      const switching = pending?.find((activity) => activity.activityType?.name === 'moveWriteAuthority');
      const pid = Number(switching?.lastWorkerIdentity?.split('@')[0]);
      const holder = workers.find((worker) => worker.child.pid === pid);
      assert.ok(holder, `the worker running moveWriteAuthority (${switching?.lastWorkerIdentity}) is ours`);
      await holder.kill('SIGKILL');
      start();
      await locker.query('ROLLBACK');

      const switched = await waitFor(
        'switched',
        () => control.status(),
        (s) => (s.step === 'switched' && s.phase !== 'switching') || s.error !== null,
        3000,
      );
      assert.equal(switched.error, null);
      assert.equal(switched.switches.at(-1)?.switched, true, JSON.stringify(switched.switches));
      // The switch's activity ran again: its last attempt was a later one, on another worker.
      const history = await client.workflow.getHandle(`migration-${migration}`).fetchHistory();
      const scheduled = history.events?.find(
        (event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'moveWriteAuthority',
      );
      const startedEvent = history.events?.find(
        (event) =>
          Number(event.activityTaskStartedEventAttributes?.scheduledEventId ?? -1) ===
          Number(scheduled?.eventId),
      );
      const attempt = startedEvent?.activityTaskStartedEventAttributes?.attempt ?? 0;
      assert.ok(attempt >= 2, `moveWriteAuthority's last attempt: ${attempt}`);
      console.log(
        `  worker ${pid} killed inside moveWriteAuthority; attempt ${attempt} moved authority (fence held ${switched.switches.at(-1)?.fencedMs} ms)`,
      );

      // The load stops; reverse sync brings new's last writes to old.
      reports = (await Promise.all(loads.splice(0).map((load) => load.stop()))).flat();
      await waitFor(
        'old equal to new',
        () => compareTables(db.pools.new, db.pools.old, table, ['id']),
        (comparison) => comparison.differenceCount === 0 && comparison.rowsNew === comparison.rowsOld,
        600,
      );
      const fenceTimeouts = reports.flatMap((writer) => writer.failures).filter((f) => FENCE_TIMEOUT.test(f));
      assert.deepEqual(
        reports.flatMap((writer) => writer.failures).filter((f) => !FENCE_TIMEOUT.test(f)),
        [],
      );
      for (const pool of [db.pools.new, db.pools.old]) await assertLoadLanded(pool, name, initial, reports);
      const all = workers.map(copiedBy);
      console.log(
        `  chunks copied by each worker process (three first, then two restarted): ${all.join(', ')}; ${reports.reduce((sum, writer) => sum + writer.acknowledged, 0)} writes acknowledged, ${fenceTimeouts.length} refused at the fence`,
      );
      await control.abort('test').catch(() => undefined);
    } finally {
      for (const load of loads.splice(0)) reports.push(...(await load.stop()));
      await client.connection.close();
    }
  });
});
