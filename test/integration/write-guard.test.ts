// The guards (hazards 7 and 12) against real PostgreSQL. Once the write guard is on old, every
// write path a writer that bypasses the routers could take is refused: INSERT, UPDATE, DELETE,
// COPY, on the table and straight into a partition, present or attached later; TRUNCATE (of the
// table or of a partition) is refused on both sides from prepare on. Only the migration's own role
// passes, by session_user: an application role with plain grants cannot lift the guard with SET or
// PGOPTIONS (what lifted it before), and neither can a superuser with SET ROLE. A partition attached
// mid-migration gets the TRUNCATE guard and its rows are logged for reconciliation; one detached
// stops reconciliation with the reason. After the switch the router no longer writes old at all.
// Removing the guards lets everyone write again.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createActivities, prepareWithoutWorkflow } from '../../activities';
import { HELPER_SCHEMA } from '../../db/helper-schema';
import type { TableRef } from '../../model/tables';
import { ConnectionPools } from '../../db/pools';
import type { ServerBinding } from '../../model/servers';
import { quoteTable } from '../../db/sql';
import { resolveConnections } from '../../config/connections';
import type { MigrationRouter } from '../../router';
import { refusalMessage } from '../harness/backfill';
import {
  applicationRole,
  freshDatabases,
  moveStage,
  routedTable,
  startRouter,
  testMigration,
} from '../harness/router';
import { testSite } from '../harness/servers';
import { runActivity } from '../harness/activity';

function refusedAsReadOnly(err: unknown): boolean {
  const error = err as pg.DatabaseError;
  assert.equal(error.code, '25006', error.message);
  assert.match(
    error.message,
    /refused here: migration [\w-]+ has moved this table's writes to the other database/,
  );
  assert.match(error.hint ?? '', /write through the migration's router/);
  return true;
}

describe('the guards', () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  let migrationPools: ConnectionPools;
  let activities: ReturnType<typeof createActivities>;
  let migration: string;
  let servers: ServerBinding;
  let table: TableRef;
  let parted: TableRef;
  let app: pg.Pool;
  let migrator: pg.Pool;
  let router: MigrationRouter | undefined;

  before(async () => {
    db = await freshDatabases('write_guard');
    migrationPools = new ConnectionPools(resolveConnections(testSite('unused'), db.env));
    activities = createActivities({ pools: migrationPools });
    migration = testMigration('guard');
    table = await routedTable(db.pools.old, db.pools.new, 'guarded', 10, migration, db.env);
    parted = { schema: 'public', table: `parted_${randomUUID().slice(0, 8)}` };
    for (const pool of [db.pools.old, db.pools.new]) {
      await pool.query(
        `CREATE TABLE ${quoteTable(parted)} (id bigint, region text, note text, PRIMARY KEY (id, region)) PARTITION BY LIST (region)`,
      );
      await pool.query(
        `CREATE TABLE ${parted.table}_eu PARTITION OF ${quoteTable(parted)} FOR VALUES IN ('eu')`,
      );
      await pool.query(
        `CREATE TABLE ${parted.table}_us PARTITION OF ${quoteTable(parted)} FOR VALUES IN ('us')`,
      );
      await pool.query(
        `INSERT INTO ${quoteTable(parted)} SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 10) g`,
      );
    }
    servers = await prepareWithoutWorkflow(activities, `${migration}-parted`, [parted]);
    app = new pg.Pool({
      connectionString: await applicationRole(db.pools.old, db.urls.old, [
        quoteTable(table),
        quoteTable(parted),
        `${parted.table}_eu`,
        `${parted.table}_us`,
      ]),
      max: 2,
    });
    migrator = new pg.Pool({ connectionString: db.migratorUrls.old, max: 2 });
  });

  after(async () => {
    await router?.end();
    await app.end();
    await migrator.end();
    await migrationPools.end();
    await db.end();
  });

  it('refuse every write path on old to everyone but the migration role, which no SET can take on', async () => {
    const name = quoteTable(table);
    const scope = {
      migration,
      servers: await activities.bindServers({ migration }),
      connection: 'old' as const,
      tables: [table],
    };
    await runActivity(activities.installWriteGuard, scope);
    await runActivity(activities.installWriteGuard, scope);
    const writes = [
      `UPDATE ${name} SET note = 'cron job' WHERE id = 1`,
      `INSERT INTO ${name} (id, customer_id, status, created_at) VALUES (99, 1, 'psql', now())`,
      `DELETE FROM ${name} WHERE id = 2`,
    ];
    for (const statement of writes) {
      // The servers' own superuser, as a psql session would connect.
      await assert.rejects(db.pools.old.query(statement), refusedAsReadOnly);
      // An application role with plain grants, claiming to be the migration the ways that worked before.
      const claiming = await app.connect();
      try {
        await claiming.query(`SET live_migrate.writer = 'migration'`);
        await assert.rejects(claiming.query(statement), refusedAsReadOnly);
      } finally {
        claiming.release(true);
      }
    }
    const claiming = new pg.Client({
      connectionString: app.options.connectionString,
      options: '-c live_migrate.writer=migration',
    });
    await claiming.connect();
    try {
      await assert.rejects(claiming.query(writes[0]!), refusedAsReadOnly);
    } finally {
      await claiming.end();
    }
    // SET ROLE changes current_user, not session_user: still refused.
    await assert.rejects(db.pools.old.query(`SET ROLE ${servers.old.role}; ${writes[0]}`), refusedAsReadOnly);
    await db.pools.old.query('RESET ROLE');
    await assert.rejects(
      app.query(`TRUNCATE ${name}`),
      /TRUNCATE of public\.guarded_\w+ is refused while migration/,
    );
    // The migration's own role writes (the reverse sync, repairs).
    await migrator.query(`UPDATE ${name} SET note = 'the reverse sync' WHERE id = 1`);
    const written = await db.pools.old.query<{ note: string }>(`SELECT note FROM ${name} WHERE id = 1`);
    assert.equal(written.rows[0]?.note, 'the reverse sync');

    await runActivity(activities.removeWriteGuard, scope);
    await app.query(`UPDATE ${name} SET note = 'allowed again' WHERE id = 3`);
    await assert.rejects(
      app.query(`TRUNCATE ${name}`),
      /is refused while migration/,
      'TRUNCATE stays refused',
    );
  });

  it('cover every partition, present and attached later; a detached one stops the sync with the reason', async () => {
    const partedMigration = `${migration}-parted`;
    const scope = { migration: partedMigration, servers, connection: 'old' as const, tables: [parted] };
    const name = quoteTable(parted);
    // TRUNCATE of a partition fires only the partition's own triggers: each has the guard.
    await assert.rejects(
      app.query(`TRUNCATE ${parted.table}_eu`),
      /TRUNCATE of public\.parted_\w+_eu is refused/,
    );
    await assert.rejects(db.pools.old.query(`TRUNCATE ${name}`), /is refused while migration/);
    // Capture sees a write straight into a partition, under the table's name.
    await app.query(`UPDATE ${parted.table}_us SET note = 'into the partition' WHERE id = 1`);
    const logged = await db.pools.old.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM ${HELPER_SCHEMA}.change_log WHERE migration = $1 AND table_name = $2`,
      [partedMigration, parted.table],
    );
    assert.equal(logged.rows[0]?.n, 1);

    // A partition with rows attached mid-migration: its rows reach the change log at the next drain
    // (ATTACH fires no trigger), and TRUNCATE of it is refused from then on.
    for (const pool of [db.pools.old, db.pools.new]) {
      await pool.query(`CREATE TABLE ${parted.table}_ap (LIKE ${name})`);
      await pool.query(`GRANT ALL ON ${parted.table}_ap TO PUBLIC`);
    }
    await db.pools.old.query(
      `INSERT INTO ${parted.table}_ap VALUES (101, 'ap', 'attached'), (102, 'ap', 'attached')`,
    );
    for (const pool of [db.pools.old, db.pools.new]) {
      await pool.query(`ALTER TABLE ${name} ATTACH PARTITION ${parted.table}_ap FOR VALUES IN ('ap')`);
    }
    const drained = await runActivity(activities.drainChangeLog, {
      migration: partedMigration,
      servers,
      from: 'old',
      to: 'new',
      batchSize: 100,
    });
    assert.deepEqual(drained.failed, []);
    assert.equal(drained.entries, 3, 'the partition write and the two rows the attached partition brought');
    const onNew = await db.pools.new.query<{ id: string }>(
      `SELECT id FROM ${name} WHERE region = 'ap' ORDER BY id`,
    );
    assert.deepEqual(
      onNew.rows.map((row) => row.id),
      ['101', '102'],
    );
    await assert.rejects(app.query(`TRUNCATE ${parted.table}_ap`), /is refused while migration/);
    // The write guard is a row trigger PostgreSQL clones to partitions attached later, too.
    await runActivity(activities.installWriteGuard, scope);
    await assert.rejects(
      app.query(`INSERT INTO ${parted.table}_ap VALUES (103, 'ap', 'x')`),
      refusedAsReadOnly,
    );
    await assert.rejects(
      app.query(`UPDATE ${parted.table}_eu SET note = 'x' WHERE id = 2`),
      refusedAsReadOnly,
    );
    await runActivity(activities.removeWriteGuard, scope);

    // A detached partition takes its rows out of the table on old without any trigger: the next
    // drain stops with the reason, and syncs nothing.
    await db.pools.old.query(`ALTER TABLE ${name} DETACH PARTITION ${parted.table}_us`);
    await assert.rejects(
      runActivity(activities.drainChangeLog, {
        migration: partedMigration,
        servers,
        from: 'old',
        to: 'new',
        batchSize: 100,
      }),
      (err) => {
        assert.match(
          refusalMessage(err),
          /partition public\.parted_\w+_us of "public"\."parted_\w+" was detached/,
        );
        return true;
      },
    );
  });

  it('after the switch the router writes new only: old takes nothing from it', async () => {
    const name = quoteTable(table);
    const started = await startRouter('guard', {
      migration,
      old: { connectionString: db.urls.old, max: 4 },
      new: { connectionString: db.urls.new, max: 4 },
    });
    router = started.router;
    await moveStage(db.pools.old, migration, [router], 'switched');
    const before = await db.pools.old.query<{ note: string | null }>(`SELECT note FROM ${name} WHERE id = 4`);
    await router.query(`UPDATE ${name} SET note = 'written after the switch' WHERE id = 4`);
    const onNew = await db.pools.new.query<{ note: string }>(`SELECT note FROM ${name} WHERE id = 4`);
    assert.equal(onNew.rows[0]?.note, 'written after the switch');
    const onOld = await db.pools.old.query<{ note: string | null }>(`SELECT note FROM ${name} WHERE id = 4`);
    assert.equal(
      onOld.rows[0]?.note,
      before.rows[0]?.note,
      'reconciliation, not the router, carries it to old',
    );
    assert.equal(await router.metrics.count('mirrors', 'mirrored'), 0);
  });
});
