// The router's hazards (DESIGN.md 3 and 4) and new going down, with real PostgreSQL and, where
// reconciliation repairs, a real Temporal server and worker:
// - hazard 3: many concurrent writes of the same few rows through several routers reach new in the
//   order old applied them; new equals old once their mirrors settle, with no reconciliation running;
//   and a mirror held back until reconciliation brought a later write of its row never brings the
//   earlier one back;
// - hazard 4: an application process killed after its commit on old and before the mirror: the row
//   still reaches new, through the change log and reconciliation;
// - new stopped during dual_write: every request succeeds, the circuit opens, discrepancies go to
//   reconciliation, and after new is back it makes new equal to old.
// Each part has databases of its own, so the reconciliation here drains only this file's changes.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { quoteTable } from '../../db/sql';
import { compareTables } from '../../db/verifier';
import { dataDir } from '../../provision/project-paths';
import { startEmbeddedCluster, type EmbeddedCluster } from '../../provision/postgres';
import { seededRandom } from '../../provision/write-load';
import type { MigrationRouter } from '../../router';
import { MAX_PENDING_MIRRORS } from '../../router/pending-mirrors';
import { drainAndStopSignal, reconciliationStatusQuery } from '../../workflows/messages';
import { startRunningWorker } from '../harness/backfill';
import {
  assertTablesEqual,
  freshDatabases,
  moveStage,
  routedTable,
  startReconciliation,
  startRouter,
  testMigration,
  withMigrationActivities,
} from '../harness/router';
import { drainUntilEmpty } from '../harness/activity';
import { installQuietRuntime } from '../harness/servers';
import { waitFor } from '../harness/wait';

installQuietRuntime();

describe('router hazards', () => {
  it('hazard 3: concurrent writes of the same rows through three routers leave new equal to old, with no reconciliation', async () => {
    const db = await freshDatabases('router_h3');
    const routers: MigrationRouter[] = [];
    try {
      const migration = testMigration('hazard3');
      const table = await routedTable(db.pools.old, db.pools.new, 'contended', 5, migration, db.env);
      const name = quoteTable(table);
      const delays = seededRandom(7);
      for (let i = 0; i < 3; i++) {
        const started = await startRouter('hazard3', {
          migration,
          old: { connectionString: db.urls.old, max: 6 },
          new: { connectionString: db.urls.new, max: 6 },
          // Generous: this test is about order, not about slow mirrors (the next test is).
          mirrorTimeoutMs: 30_000,
          // A mirror that read a row waits a little before applying it, so a later write's mirror
          // often reads after it and would apply before it, were it not for the mirror's locks.
          testHooks: { afterMirrorRead: () => new Promise((resolve) => setTimeout(resolve, delays() * 4)) },
        });
        routers.push(started.router);
      }
      await moveStage(db.pools.old, migration, routers, 'dual_write');

      const random = seededRandom(3);
      let writes = 0;
      /** Writes that changed a row, so had something to mirror. */
      let changing = 0;
      const write = async (router: MigrationRouter, writer: number, round: number, id: number) => {
        const tag = `r${round}-w${writer}`;
        const roll = random();
        let changed = 0;
        if (roll < 0.6) {
          const updated = await router.query(
            `UPDATE ${name} SET note = $1, amount = coalesce(amount, 0) + 1, updated_at = clock_timestamp() WHERE id = $2`,
            [tag, id],
          );
          changed += updated.rowCount ?? 0;
        } else if (roll < 0.8) {
          // Two rows in one transaction, in key order (so old itself cannot deadlock).
          const other = 1 + Math.floor(random() * 5);
          const client = await router.connect();
          try {
            await client.query('BEGIN');
            for (const key of [Math.min(id, other), Math.max(id, other)]) {
              const updated = await client.query(
                `UPDATE ${name} SET status = $1, updated_at = clock_timestamp() WHERE id = $2`,
                [tag, key],
              );
              changed += updated.rowCount ?? 0;
            }
            await client.query('COMMIT');
          } finally {
            client.release();
          }
        } else if (roll < 0.86) {
          changed += (await router.query(`DELETE FROM ${name} WHERE id = $1`, [id])).rowCount ?? 0;
        } else {
          const upserted = await router.query(
            `INSERT INTO ${name} (id, customer_id, status, created_at) VALUES ($1, $2, $3, clock_timestamp())
             ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, customer_id = EXCLUDED.customer_id`,
            [id, writer, tag],
          );
          changed += upserted.rowCount ?? 0;
        }
        writes++;
        if (changed > 0) changing++;
      };
      // In each round all twelve writers change the same row at once; then new must equal old. Only
      // the last mirror to commit decides the row, so every round ends on a race.
      for (let round = 0; round < 30; round++) {
        const id = 1 + (round % 5);
        await Promise.all(
          routers.flatMap((router, r) => [0, 1, 2, 3].map((w) => write(router, r * 10 + w, round, id))),
        );
        await Promise.all(routers.map((router) => router.mirrorsSettled()));
        await assertTablesEqual(db.pools.old, db.pools.new, table, `new equals old after round ${round}`);
      }
      let mirrored = 0;
      for (const router of routers) {
        mirrored += await router.metrics.count('mirrors', 'mirrored');
        for (const result of ['failed', 'timed_out', 'circuit_open']) {
          assert.equal(await router.metrics.count('mirrors', result), 0, `no mirror ${result}`);
        }
      }
      // Every write that changed a row was mirrored, once; none was left to anything else.
      assert.equal(mirrored, changing, `${mirrored} mirrors for ${changing} writes that changed a row`);
      console.log(
        `hazard 3: ${writes} writes in 30 rounds of 12 through 3 routers, ${changing} changed a row, all mirrored; new equalled old after every round`,
      );
    } finally {
      await Promise.all(routers.map((router) => router.end()));
      await db.end();
    }
  });

  it('hazard 3: a mirror held until reconciliation synced a later write of its row leaves new with the later write', async () => {
    const db = await freshDatabases('router_h3_sync');
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => (release = resolve));
    let router: MigrationRouter | undefined;
    try {
      const migration = testMigration('hazard3sync');
      const table = await routedTable(db.pools.old, db.pools.new, 'overtaken', 5, migration, db.env);
      const name = quoteTable(table);
      ({ router } = await startRouter('hazard3sync', {
        migration,
        old: { connectionString: db.urls.old, max: 4 },
        new: { connectionString: db.urls.new, max: 4 },
        mirrorTimeoutMs: 30_000,
        // Every mirror waits after the authoritative commit, with the keys it wrote, until released.
        testHooks: { afterAuthoritativeCommit: () => held },
      }));
      await moveStage(db.pools.old, migration, [router], 'dual_write');
      // In dual_write the write answers before its mirror, which now waits.
      await router.query(`UPDATE ${name} SET note = 'routed' WHERE id IN (1, 2)`);
      // A writer that bypasses the router changes one of the rows again, and reconciliation brings
      // that later write to new (reading old), while the routed write's mirror still waits.
      await db.pools.old.query(`UPDATE ${name} SET note = 'outside' WHERE id = 1`);
      await withMigrationActivities(db.env, async (activities) => {
        const servers = await activities.bindServers({ migration });
        await drainUntilEmpty(activities, { migration, servers, from: 'old', to: 'new' });
      });
      const synced = await db.pools.new.query<{ id: string; note: string }>(
        `SELECT id::text, note FROM ${name} WHERE id IN (1, 2) ORDER BY id`,
      );
      assert.deepEqual(
        synced.rows.map((row) => [row.id, row.note]),
        [
          ['1', 'outside'],
          ['2', 'routed'],
        ],
      );
      // The held mirror goes on now, after a later write of one of its rows reached new: it must not
      // bring back 'routed' on 1.
      release();
      await router.mirrorsSettled();
      await assertTablesEqual(db.pools.old, db.pools.new, table, 'after the held mirror');
      assert.equal(await router.metrics.count('mirrors', 'mirrored'), 1);
    } finally {
      release();
      await router?.end();
      await db.end();
    }
  });

  it('hazard 4: an application killed after its commit and before the mirror still gets its row to new', async () => {
    const db = await freshDatabases('router_h4');
    const worker = await startRunningWorker('router-h4', undefined, db.env);
    try {
      const migration = testMigration('hazard4');
      const table = await routedTable(db.pools.old, db.pools.new, 'crashed', 5, migration, db.env);
      await moveStage(db.pools.old, migration, [], 'dual_write');
      const app = spawn(
        process.execPath,
        [path.join(__dirname, '../harness/router-app-process.js'), migration, quoteTable(table), '501'],
        { env: db.env, stdio: ['ignore', 'pipe', 'inherit'] },
      );
      const lines: Array<Record<string, unknown>> = [];
      let partial = '';
      app.stdout.on('data', (data: Buffer) => {
        const text = (partial + data.toString('utf8')).split('\n');
        partial = text.pop() ?? '';
        for (const line of text)
          if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      });
      const exited = new Promise<void>((resolve) => app.once('close', () => resolve()));
      await waitFor('the application to commit on old', () =>
        Promise.resolve(lines.some((line) => 'committed' in line)),
      );
      app.kill('SIGKILL');
      await exited;
      const name = quoteTable(table);
      assert.equal((await db.pools.old.query(`SELECT 1 FROM ${name} WHERE id = 501`)).rowCount, 1);
      assert.equal(
        (await db.pools.new.query(`SELECT 1 FROM ${name} WHERE id = 501`)).rowCount,
        0,
        'the mirror never ran',
      );

      const reconciliation = await startReconciliation(worker, migration);
      await waitFor('reconciliation to bring the row', async () => {
        const found = await db.pools.new.query(`SELECT 1 FROM ${name} WHERE id = 501`);
        return found.rowCount === 1;
      });
      await reconciliation.signal(drainAndStopSignal);
      await reconciliation.result();
      await assertTablesEqual(db.pools.old, db.pools.new, table, 'after reconciliation');
    } finally {
      await worker.stop();
      await db.end();
    }
  });

  describe('new is down during dual_write', () => {
    let cluster: EmbeddedCluster;
    const clusterDir = path.join(dataDir, 'test', `router-new-down-${randomUUID().slice(0, 8)}`);
    const password = randomUUID();

    before(async () => {
      cluster = await startEmbeddedCluster({
        name: 'new (stoppable)',
        major: 17,
        dataDir: clusterDir,
        password,
        settings: { fsync: 'off' },
      });
    });

    after(async () => {
      await cluster.stop();
    });

    it('no request fails, the circuit opens, discrepancies reach reconciliation, and new is made equal after it returns', async () => {
      const db = await freshDatabases('router_down', cluster.url);
      const worker = await startRunningWorker('router-down', undefined, db.env);
      let router: MigrationRouter | undefined;
      try {
        const migration = testMigration('down');
        const table = await routedTable(db.pools.old, db.pools.new, 'down', 50, migration, db.env);
        const name = quoteTable(table);
        const reconciliation = await startReconciliation(worker, migration);
        const started = await startRouter('down', {
          migration,
          old: { connectionString: db.urls.old, max: 6 },
          new: { connectionString: db.urls.new, max: 6, connectionTimeoutMillis: 1000 },
          mirrorTimeoutMs: 250,
          circuitBreaker: { failureThreshold: 3, cooldownMs: 60_000 },
          reconciliation: { client: worker.client, workflowId: reconciliation.workflowId },
          discrepancies: { flushMs: 100 },
        });
        router = started.router;
        await moveStage(db.pools.old, started.migration, [router], 'dual_write');
        await router.query(`UPDATE ${name} SET note = 'before the outage' WHERE id = 1`);
        await router.mirrorsSettled();
        assert.equal(await router.metrics.count('mirrors', 'mirrored'), 1);

        await cluster.stop();
        const latencies: number[] = [];
        for (let i = 0; i < 120; i++) {
          const id = 1 + (i % 60);
          const startedAt = process.hrtime.bigint();
          if (i % 3 === 0) {
            await router.query(
              `INSERT INTO ${name} (id, customer_id, status, created_at) VALUES ($1, 9, 'during the outage', now())
               ON CONFLICT (id) DO UPDATE SET status = 'during the outage'`,
              [id],
            );
          } else if (i % 3 === 1) {
            await router.query(`UPDATE ${name} SET note = $1 WHERE id = $2`, [`outage ${i}`, id]);
          } else {
            await router.query(`DELETE FROM ${name} WHERE id = $1`, [id + 100]);
          }
          latencies.push(Number(process.hrtime.bigint() - startedAt) / 1e6);
        }
        await router.mirrorsSettled();
        assert.equal(router.circuit, 'open');
        const failedMirrors =
          (await router.metrics.count('mirrors', 'failed')) +
          (await router.metrics.count('mirrors', 'timed_out'));
        // The writes answer before their mirrors (dual_write), so the mirrors started before the
        // circuit opened, at most the pending bound and the one that waited at it, tried new.
        assert.ok(
          failedMirrors >= 3 && failedMirrors <= MAX_PENDING_MIRRORS + 1,
          `only the writes before the circuit opened tried new (${failedMirrors})`,
        );
        assert.ok(
          (await router.metrics.count('mirrors', 'circuit_open')) > 50,
          'the rest skipped new at once',
        );
        // The failed mirrors' keys go to reconciliation as discrepancy signals; the writes made while
        // the circuit was open reach it through the change log that capture fills on old.
        await router.flushDiscrepancies();
        const queued = await router.metrics.count('discrepancies', 'queued');
        const signalled = await router.metrics.count('discrepancies', 'signalled');
        assert.ok(queued >= 1, `the failed mirrors' keys were queued (${queued})`);
        assert.equal(signalled, queued, `and signalled to reconciliation (${signalled} of ${queued})`);
        assert.equal(router.pendingDiscrepancyKeys, 0);
        latencies.sort((a, b) => a - b);
        const p = (q: number) =>
          latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))]!.toFixed(2);
        console.log(
          `new down: 120 writes, none failed, ${failedMirrors} mirrors tried new; latency p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, max ${p(1)} ms`,
        );
        // Not a timing test: a hang would show here as a write far beyond the mirror timeout.
        assert.ok(latencies[latencies.length - 1]! < 10_000);

        const restarted = await startEmbeddedCluster({
          name: 'new (stoppable)',
          major: 17,
          dataDir: clusterDir,
          port: cluster.port,
          password,
          settings: { fsync: 'off' },
        });
        cluster = restarted;
        await waitFor(
          'reconciliation to make new equal to old',
          async () => (await compareTables(db.pools.old, db.pools.new, table, ['id'])).differenceCount,
          (differences) => differences === 0,
        );
        const status = await reconciliation.query(reconciliationStatusQuery);
        assert.ok(status.keysSynced > 0, JSON.stringify(status));
        await reconciliation.signal(drainAndStopSignal);
        await reconciliation.result();
        await assertTablesEqual(db.pools.old, db.pools.new, table, 'after new returned');
      } finally {
        await router?.end();
        await worker.stop();
        await db.end();
      }
    });
  });
});
