// A partitioned table migrated end to end by a least-privileged migration role (issue 11, cases 2,
// 3 and 4), on real servers (PostgreSQL 15 → 17), under load. The worker connects as a role that is
// no superuser: a member of the tables' owner role, with CREATE on the database for its helper
// schema, as the README's grants say. The application connects as a role with plain table grants,
// through a router and, bypassing it, straight into partitions. The table is range-partitioned with a
// list-partitioned sub-partition; a partition with rows is attached while the migration runs.
// Checked on the way: TRUNCATE of a partition is refused on old and on new; after the switch old
// refuses the application's direct writes into a partition, its claim to be the migration
// (`SET live_migrate.writer`), and its TRUNCATE; after the rollback to live new still refuses
// TRUNCATE. New equals old row for row, every column, the attached partition's rows included; no
// request through the router failed. Then forward again to complete and retire, which removes
// everything the migration put there.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { compareTables } from '../../db/verifier';
import { MigrationControl, startMigration } from '../../client/migrations';
import { parseMigrationConfig } from '../../config/load';
import { createRouter, type MigrationRouter } from '../../router';
import { createLogger } from '../../db/logger';
import { startRunningWorker } from '../harness/backfill';
import { waitForMigration } from '../harness/migration';
import { freshDatabases, testMigration } from '../harness/router';
import { installQuietRuntime } from '../harness/servers';
import { waitFor } from '../harness/wait';

installQuietRuntime();

const TABLE = { schema: 'public', table: 'readings' };
const KEY = ['id', 'region', 'taken_at'];
const PARTITIONS = [
  'readings_2025',
  'readings_2026',
  'readings_2026_eu',
  'readings_2026_us',
  'readings_2027',
];

function withUser(url: string, user: string, password: string): string {
  const parsed = new URL(url);
  parsed.username = user;
  parsed.password = password;
  return parsed.toString();
}

function refusedAsReadOnly(err: unknown): boolean {
  assert.equal((err as pg.DatabaseError).code, '25006', (err as Error).message);
  return true;
}

describe('a partitioned table, migrated by a least-privileged role', () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  let worker: Awaited<ReturnType<typeof startRunningWorker>>;
  const suffix = randomUUID().slice(0, 8);
  const roles = { owner: `lp_owner_${suffix}`, migrator: `lp_migrator_${suffix}`, app: `lp_app_${suffix}` };
  const password = randomUUID();
  let app: { old: pg.Pool; new: pg.Pool };
  let migratorEnv: NodeJS.ProcessEnv;

  before(async () => {
    db = await freshDatabases('partitioned');
    const database = new URL(db.urls.old).pathname.slice(1);
    for (const pool of [db.pools.old, db.pools.new]) {
      // The README's grants: the migration's role owns nothing but is a member of the tables' owner.
      await pool.query(`CREATE ROLE ${roles.owner} NOLOGIN`);
      await pool.query(`CREATE ROLE ${roles.migrator} LOGIN NOSUPERUSER PASSWORD '${password}'`);
      await pool.query(`GRANT ${roles.owner} TO ${roles.migrator}`);
      await pool.query(`GRANT CREATE ON DATABASE ${database} TO ${roles.migrator}`);
      await pool.query(`CREATE ROLE ${roles.app} LOGIN PASSWORD '${password}'`);
      // The helper schema freshDatabases made belongs to another role: this migration makes its own.
      await pool.query('DROP SCHEMA IF EXISTS live_migrate CASCADE');
      await pool.query(
        `CREATE TABLE readings (id bigint, region text, taken_at date, value numeric(10,2), note text,
           PRIMARY KEY (id, region, taken_at)) PARTITION BY RANGE (taken_at)`,
      );
      await pool.query(
        `CREATE TABLE readings_2025 PARTITION OF readings FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')`,
      );
      await pool.query(
        `CREATE TABLE readings_2026 PARTITION OF readings FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY LIST (region)`,
      );
      await pool.query(`CREATE TABLE readings_2026_eu PARTITION OF readings_2026 FOR VALUES IN ('eu')`);
      await pool.query(`CREATE TABLE readings_2026_us PARTITION OF readings_2026 FOR VALUES IN ('us')`);
      // Attached while the migration runs (below).
      await pool.query(`CREATE TABLE readings_2027 (LIKE readings INCLUDING ALL)`);
      for (const table of ['readings', ...PARTITIONS]) {
        await pool.query(`ALTER TABLE ${table} OWNER TO ${roles.owner}`);
        await pool.query(`GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ${table} TO ${roles.app}`);
      }
    }
    await db.pools.old.query(
      `INSERT INTO readings SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END,
              date '2025-01-01' + (g % 700), g / 10.0, 'seeded' FROM generate_series(1, 3000) g`,
    );
    await db.pools.old.query(
      `INSERT INTO readings_2027 SELECT g, 'ap', date '2027-01-01' + (g % 300), g, 'came with its partition'
         FROM generate_series(100001, 100200) g`,
    );
    migratorEnv = {
      ...db.env,
      OLD_DATABASE_URL: withUser(db.urls.old, roles.migrator, password),
      NEW_DATABASE_URL: withUser(db.urls.new, roles.migrator, password),
    };
    worker = await startRunningWorker('partitioned', undefined, migratorEnv);
    app = {
      old: new pg.Pool({ connectionString: withUser(db.urls.old, roles.app, password), max: 4 }),
      new: new pg.Pool({ connectionString: withUser(db.urls.new, roles.app, password), max: 4 }),
    };
  });

  after(async () => {
    await worker.stop();
    await app.old.end();
    await app.new.end();
    await db.end();
  });

  it('copies, switches and rolls back through every partition, with every write path guarded', async () => {
    const migration = testMigration('parted');
    const control = new MigrationControl(worker.client, migration);
    let router: MigrationRouter | undefined;
    let stopping = false;
    const load = { acknowledged: 0, failed: [] as string[], direct: 0, refused: 0, other: [] as string[] };
    const loops: Array<Promise<void>> = [];
    try {
      await startMigration(
        worker.client,
        parseMigrationConfig({
          name: migration,
          tables: ['public.readings'],
          chunkSize: 200,
          cutover: { readSteps: [100], stepSoak: 300, soak: '1s', approvals: ['shadow', 'switched'] },
          verification: { chunkSize: 500, settle: 200 },
          queryBenchmark: { topStatements: 0 },
        }),
        worker.taskQueue,
      );
      const prepared = await control.prepared();
      assert.equal(prepared.error, null);
      assert.ok(prepared.events.some((event) => event.text.startsWith('prepared')));

      // The application, through a router as its own role, and a job writing old's partitions directly.
      router = await createRouter({
        migration,
        old: { connectionString: withUser(db.urls.old, roles.app, password), max: 4 },
        new: { connectionString: withUser(db.urls.new, roles.app, password), max: 4 },
        stageWatcher: { pollMs: 200, heartbeatMs: 500 },
        logger: createLogger({ name: 'router', level: 'error', pretty: false }),
      });
      const routed = router;
      loops.push(
        (async () => {
          for (let i = 0; !stopping; i++) {
            const id = 200_000 + i;
            try {
              if (i % 3 === 0) {
                await routed.query(`INSERT INTO readings VALUES ($1, $2, $3, $4, 'routed')`, [
                  id,
                  i % 2 === 0 ? 'eu' : 'us',
                  i % 4 === 0 ? '2026-06-01' : '2025-06-01',
                  i,
                ]);
              } else if (i % 3 === 1) {
                await routed.query(
                  `UPDATE readings SET value = value + 1, note = 'routed update' WHERE id = $1`,
                  [1 + (i % 3000)],
                );
              } else {
                await routed.query(`DELETE FROM readings WHERE id = $1`, [200_000 + i - 2]);
              }
              load.acknowledged++;
            } catch (err) {
              load.failed.push((err as Error).message);
            }
            // Paced: unpaced, a slow CI machine wrote faster than reconciliation drained the
            // partitions, and the backlog gate (1,000) held at dual_write (backlog 1,036, lag 0.6 s).
            await new Promise((resolve) => setTimeout(resolve, 3));
          }
        })(),
        (async () => {
          for (let i = 0; !stopping; i++) {
            try {
              // One row of the partition each time: a row trigger (the guard) fires for rows it meets.
              await app.old.query(
                `UPDATE readings_2026_us SET note = $2 WHERE id = (SELECT min(id) FROM readings_2026_us WHERE id > $1)`,
                [i % 2900, `job ${i}`],
              );
              load.direct++;
            } catch (err) {
              if ((err as { code?: string }).code === '25006') load.refused++;
              else load.other.push((err as Error).message);
            }
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
        })(),
      );

      // A partition with rows attached mid-migration, on both sides (new's empty).
      for (const pool of [db.pools.old, db.pools.new]) {
        await pool.query(
          `ALTER TABLE readings ATTACH PARTITION readings_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')`,
        );
      }
      // TRUNCATE of a partition or sub-partition: refused on both sides (case 4).
      await assert.rejects(
        app.old.query('TRUNCATE readings_2025'),
        /TRUNCATE of public\.readings_2025 is refused while migration/,
      );
      await assert.rejects(
        app.new.query('TRUNCATE readings_2026_eu'),
        /TRUNCATE of public\.readings_2026_eu is refused/,
      );

      let status = await waitForMigration(
        control,
        'dual_write verified, held before shadow',
        (s) => s.held?.kind === 'approval',
      );
      assert.equal(status.verifiedClean, true);
      assert.ok(status.tables[0]!.verification!.rowsFrom >= 3200, 'the attached partition was verified too');
      // The attached partition's rows got to new, though ATTACH fires no trigger.
      await waitFor(
        "the attached partition's rows on new",
        async () =>
          (await db.pools.new.query(`SELECT 1 FROM readings WHERE id BETWEEN 100001 AND 100200`)).rowCount,
        (rows) => rows === 200,
      );
      // Least privilege: the migration's role is no superuser.
      const migrator = new pg.Client({ connectionString: migratorEnv.OLD_DATABASE_URL });
      await migrator.connect();
      try {
        const role = await migrator.query<{ super: boolean }>(
          `SELECT rolsuper AS super FROM pg_roles WHERE rolname = current_user`,
        );
        assert.equal(role.rows[0]?.super, false);
      } finally {
        await migrator.end();
      }

      await control.approve('test');
      status = await waitForMigration(
        control,
        'live 100%, held before the switch',
        (s) => s.held?.kind === 'approval' && s.stage === 'live',
      );
      await control.approve('test');
      status = await waitForMigration(control, 'switched', (s) => s.stage === 'switched' && s.held === null);
      assert.ok(status.switches.at(-1)?.switched);

      // Old after the switch (cases 2, 3 and 4): the application's writes into a partition, its
      // claim to be the migration, and its TRUNCATE are refused.
      await assert.rejects(
        app.old.query(`INSERT INTO readings_2027 VALUES (300001, 'ap', '2027-03-01', 1, 'past the router')`),
        refusedAsReadOnly,
      );
      const claiming = await app.old.connect();
      try {
        await claiming.query(`SET live_migrate.writer = 'migration'`);
        await assert.rejects(
          claiming.query(`UPDATE readings_2025 SET note = 'lifted?' WHERE id = 2`),
          refusedAsReadOnly,
        );
      } finally {
        claiming.release(true);
      }
      await assert.rejects(app.old.query('TRUNCATE readings'), /is refused while migration/);
      await waitFor('the job to meet the guard', () => Promise.resolve(load.refused > 0));

      // Back to live: the reverse switch; new still refuses TRUNCATE (case 2, after a rollback).
      assert.deepEqual(await control.rollback('live:100', 'test'), { from: 'switched', to: 'live 100%' });
      await assert.rejects(app.new.query('TRUNCATE readings_2026_eu'), /is refused while migration/);
      const writesBefore = load.acknowledged;
      await waitFor('writes through the router after the rollback', () =>
        Promise.resolve(load.acknowledged > writesBefore + 20),
      );
    } finally {
      stopping = true;
      await Promise.all(loops);
      await router?.end();
    }
    assert.deepEqual(load.failed, [], 'no request through the router failed');
    assert.deepEqual(load.other, [], 'the job met nothing but the guard');
    await waitFor(
      'new to equal old, every column of every partition',
      async () => (await compareTables(db.pools.old, db.pools.new, TABLE, KEY)).differenceCount,
      (differences) => differences === 0,
    );
    console.log(
      `partitioned: ${load.acknowledged} writes through the router, ${load.direct} direct writes into a partition before the switch, ${load.refused} refused after it; new equals old`,
    );

    // Forward again, through the switch, complete and the soak, to retire: the whole migration.
    await control.resume();
    await waitForMigration(
      control,
      'held before the switch again',
      (s) => s.held?.kind === 'approval' && s.stage === 'live',
    );
    await control.approve('test');
    await waitForMigration(control, 'the soak over, retiring waits', (s) => s.held?.kind === 'retire');
    await control.approve('test');
    const retired = await control.result();
    assert.equal(retired.phase, 'retired');
    for (const pool of [db.pools.old, db.pools.new]) {
      const triggers = await pool.query(
        `SELECT tgname, tgrelid::regclass FROM pg_trigger WHERE tgname LIKE 'lm\\_%' AND NOT tgisinternal`,
      );
      assert.deepEqual(triggers.rows, [], 'no trigger of the migration is left on any partition');
      const helpers = await pool.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'live_migrate'`);
      assert.equal(helpers.rowCount, 0, 'the helper schema went with it');
    }
    const rows = await db.pools.new.query<{ n: string }>(`SELECT count(*) AS n FROM readings`);
    assert.ok(Number(rows.rows[0]?.n) >= 3200);
  });
});
