// A mirror deletes the change log entries of the keys it committed on new, so reconciliation does not
// sync them again. This provokes that skip with real concurrent traffic on real PostgreSQL: two
// routers racing on the same few rows (updates, deletes, upserts, two-row transactions, with the
// mirror's window between read and apply widened), a writer bypassing the routers on the same rows,
// and an application killed after its commit on old and before its mirror. Then:
// - every entry a router's mirror covered is gone (one router connects as an application's role), and every other entry (the bypassing writer's,
//   the killed application's) is still there: the skip took exactly what the mirrors applied;
// - every key where new differs from old still has an entry (hazards 3, 4 and 6: nothing a skip
//   dropped is needed to repair new);
// - reconciliation then makes new equal to old row by row: nothing lost, resurrected or stale.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { HELPER_SCHEMA } from '../../db/helper-schema';
import { quoteTable } from '../../db/sql';
import { compareTables } from '../../db/verifier';
import { seededRandom } from '../../provision/write-load';
import type { MigrationRouter } from '../../router';
import { drainAndStopSignal } from '../../workflows/messages';
import { startRunningWorker } from '../harness/backfill';
import {
  applicationRole,
  assertTablesEqual,
  freshDatabases,
  moveStage,
  routedTable,
  startReconciliation,
  startRouter,
  testMigration,
} from '../harness/router';
import { installQuietRuntime } from '../harness/servers';
import { waitFor } from '../harness/wait';

installQuietRuntime();

/** The row the killed application inserts: no other writer touches it until it is on old. */
const KILLED_ID = 901;

describe('mirror skips what reconciliation would sync again', () => {
  it('racing routers, a bypassing writer and a killed application: only the mirrored entries go, and reconciliation repairs the rest', async () => {
    const db = await freshDatabases('mirror_skip');
    const worker = await startRunningWorker('mirror-skip', undefined, db.env);
    const routers: MigrationRouter[] = [];
    try {
      const migration = testMigration('skip');
      const table = await routedTable(db.pools.old, db.pools.new, 'skipped', 6, migration, db.env);
      const name = quoteTable(table);
      const delays = seededRandom(11);
      // The second router connects as an application role with plain table rights: it deletes the
      // entries its mirrors applied through the helper function, without rights on the change log.
      const connections = [
        db.urls,
        {
          old: await applicationRole(db.pools.old, db.urls.old, [name]),
          new: await applicationRole(db.pools.new, db.urls.new, [name]),
        },
      ];
      for (const urls of connections) {
        const started = await startRouter('skip', {
          migration,
          old: { connectionString: urls.old, max: 6 },
          new: { connectionString: urls.new, max: 6 },
          mirrorTimeoutMs: 30_000,
          // Between the mirror's read and its apply, other writers (the bypassing one too) commit.
          testHooks: { afterMirrorRead: () => new Promise((resolve) => setTimeout(resolve, delays() * 4)) },
        });
        routers.push(started.router);
      }
      await moveStage(db.pools.old, migration, routers, 'dual_write');
      const entries = async () =>
        Number(
          (
            await db.pools.old.query<{ count: string }>(
              `SELECT count(*) AS count FROM ${HELPER_SCHEMA}.change_log WHERE migration = $1`,
              [migration],
            )
          ).rows[0]!.count,
        );
      assert.equal(await entries(), 0, 'no entries before the traffic');

      // The application killed after its commit and before its mirror: its entry must stay.
      const app = spawn(
        process.execPath,
        [path.join(__dirname, '../harness/router-app-process.js'), migration, name, String(KILLED_ID)],
        {
          env: { ...db.env, OLD_DATABASE_URL: db.urls.old, NEW_DATABASE_URL: db.urls.new },
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      const exited = new Promise<void>((resolve) => app.once('close', () => resolve()));
      let output = '';
      app.stdout.on('data', (data: Buffer) => (output += data.toString('utf8')));
      await waitFor('the application to commit on old', () =>
        Promise.resolve(output.includes('"committed"')),
      );
      app.kill('SIGKILL');
      await exited;
      assert.ok(!output.includes('"mirrored"'), 'the application died before its mirror');

      const random = seededRandom(5);
      /** Entries the bypassing writer's statements wrote: one per row they changed. */
      let bypassEntries = 0;
      let routedWrites = 0;
      const routed = async (router: MigrationRouter, tag: string, id: number) => {
        const roll = random();
        routedWrites++;
        if (roll < 0.5) {
          await router.query(
            `UPDATE ${name} SET note = $1, amount = coalesce(amount, 0) + 1, updated_at = clock_timestamp() WHERE id = $2`,
            [tag, id],
          );
        } else if (roll < 0.65) {
          const other = 1 + Math.floor(random() * 6);
          const client = await router.connect();
          try {
            await client.query('BEGIN');
            for (const key of [Math.min(id, other), Math.max(id, other)]) {
              await client.query(`UPDATE ${name} SET status = $1 WHERE id = $2`, [tag, key]);
            }
            await client.query('COMMIT');
          } finally {
            client.release();
          }
        } else if (roll < 0.8) {
          await router.query(`DELETE FROM ${name} WHERE id = $1`, [id]);
        } else {
          await router.query(
            `INSERT INTO ${name} (id, customer_id, status, created_at) VALUES ($1, 2, $2, clock_timestamp())
             ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, note = NULL`,
            [id, tag],
          );
        }
      };
      const bypass = async (tag: string, id: number) => {
        const roll = random();
        const result =
          roll < 0.6
            ? await db.pools.old.query(`UPDATE ${name} SET note = $1, amount = -1 WHERE id = $2`, [tag, id])
            : roll < 0.75
              ? await db.pools.old.query(`DELETE FROM ${name} WHERE id = $1`, [id])
              : await db.pools.old.query(
                  `INSERT INTO ${name} (id, customer_id, status, created_at) VALUES ($1, 3, $2, clock_timestamp())
                   ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status`,
                  [id, tag],
                );
        bypassEntries += result.rowCount ?? 0;
      };
      // Each round, six routed writers and two bypassing ones change the same row at once.
      for (let round = 0; round < 40; round++) {
        const id = 1 + (round % 6);
        await Promise.all([
          ...routers.flatMap((router, r) => [0, 1, 2].map((w) => routed(router, `r${round}-w${r}${w}`, id))),
          bypass(`r${round}-bypass-a`, id),
          bypass(`r${round}-bypass-b`, id),
        ]);
      }
      for (const router of routers) {
        for (const result of ['failed', 'timed_out', 'circuit_open', 'too_many_keys']) {
          assert.equal(await router.metrics.count('mirrors', result), 0, `no mirror ${result}`);
        }
      }
      // Ending a router deletes the entries its last mirrors covered.
      await Promise.all(routers.map((router) => router.end()));

      // Exactly the entries no router mirrored are left: the bypassing writer's and the killed one's.
      const left = await entries();
      assert.equal(
        left,
        bypassEntries + 1,
        `${left} entries left after ${routedWrites} routed writes; the bypassing writer made ${bypassEntries}, the killed application 1`,
      );
      // Whatever still differs on new has an entry left to repair it.
      const logged = new Set(
        (
          await db.pools.old.query<{ id: string }>(
            `SELECT DISTINCT key->>0 AS id FROM ${HELPER_SCHEMA}.change_log WHERE migration = $1`,
            [migration],
          )
        ).rows.map((row) => row.id),
      );
      const before = await compareTables(db.pools.old, db.pools.new, table, ['id'], 1000);
      assert.ok(
        before.differenceCount > 0,
        'the bypassing writer and the killed application left new behind',
      );
      for (const difference of before.differences) {
        const id = difference.key.replace(/^\((.*)\)$/, '$1');
        assert.ok(logged.has(id), `row ${id} differs on new (${difference.kind}) and has an entry left`);
      }
      assert.ok(logged.has(String(KILLED_ID)), "the killed application's entry stays");

      const reconciliation = await startReconciliation(worker, migration);
      await waitFor('reconciliation to drain the change log', entries, (count) => count === 0);
      await reconciliation.signal(drainAndStopSignal);
      await reconciliation.result();
      await assertTablesEqual(db.pools.old, db.pools.new, table, 'after reconciliation');
      console.log(
        `mirror skip: ${routedWrites} routed writes mirrored and their entries deleted; ${bypassEntries} bypassing and 1 killed entries left for reconciliation, which repaired ${before.differenceCount} rows`,
      );
    } finally {
      await Promise.all(routers.map((router) => router.end()));
      await worker.stop();
      await db.end();
    }
  });
});
