// The whole migration, as an operator runs it: `migrationWorkflow` on a real Temporal server moves a
// table from old (PostgreSQL 15) to new (17) from `off` to `complete` and retires the helpers, while
// two application processes write and read through their routers and an outside writer writes old
// directly (hazard 6; refused once old is guarded, hazard 7). On the way it rolls back from every
// stage: from dual_write to off, shadow to dual_write, live to shadow, switched to live (writes made
// on new come back to old: hazard 8), complete to switched. At the end new equals old row for row,
// every acknowledged write of the load is there exactly once (each writer's counter equals its
// acknowledged writes on both sides), no request of the load failed, and the history replays.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Worker } from '@temporalio/worker';
import type { TableRef } from '../../model/tables';
import { quoteTable } from '../../db/sql';
import { compareTables } from '../../db/verifier';
import { MigrationControl, startMigration } from '../../client/migrations';
import { parseMigrationConfig } from '../../config/load';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { readStage } from '../../db/stage-store';
import { startRunningWorker } from '../harness/backfill';
import {
  assertLoadLanded,
  loadCounters,
  startLoadProcess,
  type LoadProcess,
} from '../harness/load-processes';
import type { LoadWriterReport } from '../harness/router-load-process';
import { freshDatabases } from '../harness/router';
import { installQuietRuntime, servers } from '../harness/servers';
import { waitForMigration } from '../harness/migration';
import { waitFor } from '../harness/wait';
import { workflowsPath } from '../harness/workflow-histories';

installQuietRuntime();

const SEEDED = 3000;

describe('a migration from off to complete under load', () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  let worker: Awaited<ReturnType<typeof startRunningWorker>>;
  const table: TableRef = { schema: 'public', table: 'orders' };
  const name = quoteTable(table);
  const loads: LoadProcess[] = [];

  before(async () => {
    db = await freshDatabases('migration_e2e');
    await db.pools.old.query(sampleTableDdl(table));
    await db.pools.new.query(sampleTableDdl(table));
    await seedSampleRows(db.pools.old, table, SEEDED);
    worker = await startRunningWorker('migration-e2e', undefined, db.env);
  });

  after(async () => {
    for (const load of loads) load.kill();
    await worker.stop();
    await db.end();
  });

  it('moves reads and writes to new, rolls back from every stage without losing a write, and retires', async (t) => {
    const migration = `e2e-${db.urls.old.split('/').pop()!.replace(/_/g, '-')}`;
    const config = parseMigrationConfig({
      name: migration,
      tables: ['public.orders'],
      chunkSize: 250,
      partitions: 2,
      cutover: {
        readSteps: [50, 100],
        stepSoak: 400,
        soak: '3s',
        approvals: ['shadow', 'live', 'switched', 'complete'],
        // Every row of this load is rewritten without pause, the worst case for comparing reads on
        // two servers; the mismatch gate itself is proven in migration-gates.test.ts.
        gates: { maxReconciliationBacklog: 5000, maxLatencyRatio: 50, maxShadowMismatchRate: 1 },
      },
      verification: { chunkSize: 500, settle: 300 },
      queryBenchmark: {
        queries: [
          { name: 'orders by customer', sql: 'SELECT count(*) FROM public.orders WHERE customer_id < 5000' },
        ],
        topStatements: 0,
        runs: 5,
      },
    });
    const control = new MigrationControl(worker.client, migration);
    const started = await startMigration(worker.client, config, worker.taskQueue);
    assert.equal(started.started, true);
    // Starting again is safe: it finds the running migration and changes nothing.
    assert.equal((await startMigration(worker.client, config, worker.taskQueue)).started, false);

    const initial = await loadCounters(db.pools.old, name, 6);
    const env = { ...db.env, TEMPORAL_ADDRESS: servers.temporalAddress };
    loads.push(await startLoadProcess(env, migration, name, 1, 3));
    loads.push(await startLoadProcess(env, migration, name, 4, 3));

    // The outside writer: a cron job writing old directly, past every router.
    let outsideStop = false;
    const outside = { written: 0, refused: 0, other: [] as string[] };
    const outsideLoop = (async () => {
      for (let i = 0; !outsideStop; i++) {
        try {
          await db.pools.old.query(`UPDATE ${name} SET amount = $2 WHERE id = $1`, [100 + (i % 50), i]);
          outside.written++;
        } catch (err) {
          if ((err as { code?: string }).code === '25006') outside.refused++;
          else outside.other.push((err as Error).message);
        }
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();

    const heldFor = (kind: string, step?: string) =>
      waitForMigration(
        control,
        `the migration held (${kind}${step !== undefined ? ` at ${step}` : ''})`,
        (status) => status.held?.kind === kind && (step === undefined || status.step === step),
        3000,
      );
    const stageOnOld = async () => (await readStage(db.pools.old, migration)).stage;

    let reports: LoadWriterReport[] = [];
    try {
      // dual_write: backfill and verification done, held before shadow. Roll back to off.
      let status = await heldFor('approval', 'dual_write');
      assert.equal(status.verifiedClean, true);
      assert.equal(status.tables[0]!.backfillDone, true);
      assert.deepEqual(await control.rollback('off'), { from: 'dual_write', to: 'off' });
      assert.equal(await stageOnOld(), 'off');
      await control.resume();

      // Forward again: dual_write is verified again before shadow.
      status = await heldFor('approval', 'dual_write');
      assert.ok(status.tables[0]!.verification !== null);
      await control.approve('test');
      // shadow: gates passed, held before live 50%. Roll back to dual_write, then forward.
      status = await heldFor('approval', 'shadow');
      assert.equal(status.lastGate?.passed, true, JSON.stringify(status.lastGate));
      assert.ok((status.queryBenchmark?.queries.length ?? 0) === 1, JSON.stringify(status.queryBenchmark));
      await control.rollback('dual_write');
      assert.equal(await stageOnOld(), 'dual_write');
      await control.resume();
      await heldFor('approval', 'dual_write');
      await control.approve();
      await heldFor('approval', 'shadow');
      await control.approve();
      // live 50%: roll back to shadow, then forward to live 100%.
      await heldFor('approval', 'live 50%');
      await control.rollback('shadow');
      assert.equal(await stageOnOld(), 'shadow');
      await control.resume();
      await heldFor('approval', 'shadow');
      await control.approve();
      await heldFor('approval', 'live 50%');
      await control.approve();
      // live 100%, then the write switch on approval.
      await heldFor('approval', 'live 100%');
      await control.approve();
      status = await heldFor('approval', 'switched');
      const forward = status.switches[status.switches.length - 1]!;
      assert.equal(forward.switched, true, forward.reason);
      assert.equal(await stageOnOld(), 'switched');
      // Writes land on new now; the outside writer is refused by old.
      const refusedBefore = outside.refused;
      await waitFor('the outside writer refused by old', () =>
        Promise.resolve(outside.refused > refusedBefore),
      );
      // Roll back from switched: authority returns to old with every write made on new.
      assert.deepEqual(await control.rollback('live:100'), { from: 'switched', to: 'live 100%' });
      assert.equal(await stageOnOld(), 'live');
      const writtenBefore = outside.written;
      await waitFor('the outside writer writing old again', () =>
        Promise.resolve(outside.written > writtenBefore),
      );
      await control.resume();
      await heldFor('approval', 'live 100%');
      await control.approve();
      await heldFor('approval', 'switched');
      await control.approve();
      // complete: the soak, then retiring waits for approval. Roll back to switched and forward.
      await heldFor('retire', 'complete');
      await control.rollback();
      assert.equal(await stageOnOld(), 'switched');
      await control.resume();
      await heldFor('approval', 'switched');
      await control.approve();
      status = await heldFor('retire', 'complete');

      // The load stops; reverse sync brings new's last writes to old.
      reports = (await Promise.all(loads.splice(0).map((load) => load.stop()))).flat();
      outsideStop = true;
      await outsideLoop;
      await waitFor(
        'old equal to new',
        () => compareTables(db.pools.new, db.pools.old, table, ['id']),
        (comparison) => comparison.differenceCount === 0 && comparison.rowsNew === comparison.rowsOld,
        600,
      );
      status = await control.status();
      assert.deepEqual(
        status.rollbacks.map((rollback) => `${rollback.from}→${rollback.to}`),
        ['dual_write→off', 'shadow→dual_write', 'live 50%→shadow', 'switched→live 100%', 'complete→switched'],
      );
      assert.deepEqual(
        status.switches.map((s) => `${s.direction}:${s.switched}`),
        ['to-new:true', 'to-old:true', 'to-new:true'],
      );
    } finally {
      outsideStop = true;
      await outsideLoop;
      for (const load of loads.splice(0)) reports.push(...(await load.stop()));
    }

    // The figures of the switches under this load (reported, not asserted: no timed tests).
    const switches = (await control.status()).switches;
    t.diagnostic(
      `write switches: ${switches.map((s) => `${s.direction} fence ${s.fencedMs} ms (${JSON.stringify(s.stepsMs)})`).join('; ')}; longest write of the load over the whole run: ${Math.max(...reports.map((writer) => writer.longestWriteMs))} ms; ${reports.reduce((sum, writer) => sum + writer.acknowledged, 0)} writes acknowledged`,
    );
    // No request of the load failed, and every acknowledged write is there exactly once.
    assert.deepEqual(
      reports.flatMap((writer) => writer.failures),
      [],
    );
    assert.deepEqual(outside.other, []);
    assert.ok(outside.refused > 0 && outside.written > 0);
    for (const pool of [db.pools.new, db.pools.old]) await assertLoadLanded(pool, name, initial, reports);

    // Retire: approval, then capture, guards, flags and helper tables go; the rows stay.
    await control.approve();
    const final = await control.result();
    assert.equal(final.phase, 'retired');
    for (const pool of [db.pools.old, db.pools.new]) {
      const helpers = await pool.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'live_migrate'`);
      assert.equal(helpers.rowCount, 0);
      const triggers = await pool.query(
        `SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal`,
        [name],
      );
      assert.deepEqual(triggers.rows, []);
      const count = await pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${name}`);
      assert.ok(Number(count.rows[0]!.n) >= SEEDED);
    }
    const handle = worker.client.workflow.getHandle(`migration-${migration}`);
    await Worker.runReplayHistory(
      { workflowsPath, replayName: handle.workflowId },
      await handle.fetchHistory(),
      handle.workflowId,
    );
    assert.ok(final.runs >= 1);
  });
});
