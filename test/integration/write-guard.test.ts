// The write guard (hazard 7's building block) against real PostgreSQL: once installed on old, a
// write from an ordinary session is refused with SQLSTATE 25006 and a message that says what to do,
// while the migration's own sessions (the router's mirror back to old after the switch) still write;
// removing it lets everyone write again.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createActivities } from '../../activities';
import type { TableRef } from '../../activities/inspector';
import { ConnectionPools } from '../../activities/pools';
import { quoteTable } from '../../activities/sql';
import { resolveConnections } from '../../config/connections';
import type { MigrationRouter } from '../../router';
import { freshDatabases, moveStage, routedTable, startRouter } from '../harness/router';
import { testSite } from '../harness/servers';
import { runActivity } from '../harness/activity';

describe('write guard on old', () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  let migrationPools: ConnectionPools;
  let activities: ReturnType<typeof createActivities>;
  let table: TableRef;
  let router: MigrationRouter | undefined;

  before(async () => {
    db = await freshDatabases('write_guard');
    migrationPools = new ConnectionPools(resolveConnections(testSite('unused'), db.env));
    activities = createActivities({ pools: migrationPools });
    table = await routedTable(db.pools.old, db.pools.new, 'guarded', 10, db.env);
    await runActivity(activities.installChangeCapture, { connection: 'new', tables: [table] });
  });

  after(async () => {
    await router?.end();
    await migrationPools.end();
    await db.end();
  });

  it('refuses writes from anyone but the migration, whose mirror still writes; removal lifts it', async () => {
    const name = quoteTable(table);
    await runActivity(activities.installWriteGuard, { connection: 'old', tables: [table] });
    await runActivity(activities.installWriteGuard, { connection: 'old', tables: [table] });
    for (const statement of [
      `UPDATE ${name} SET note = 'cron job' WHERE id = 1`,
      `INSERT INTO ${name} (id, customer_id, status, created_at) VALUES (99, 1, 'psql', now())`,
      `DELETE FROM ${name} WHERE id = 2`,
    ]) {
      await assert.rejects(db.pools.old.query(statement), (err: pg.DatabaseError) => {
        assert.equal(err.code, '25006');
        assert.match(
          err.message,
          /writes to public\.guarded_\w+ are refused: this table has moved to the new database/,
        );
        assert.match(err.hint ?? '', /write through the migration's router/);
        return true;
      });
    }
    // After the switch the router writes new and mirrors back to old through the migration's sessions.
    const started = await startRouter('guard', {
      old: { connectionString: db.urls.old, max: 4 },
      new: { connectionString: db.urls.new, max: 4 },
    });
    router = started.router;
    await moveStage(db.pools.old, started.migration, [router], 'switched');
    await router.query(`UPDATE ${name} SET note = 'written after the switch' WHERE id = 1`);
    const mirrored = await db.pools.old.query<{ note: string }>(`SELECT note FROM ${name} WHERE id = 1`);
    assert.equal(mirrored.rows[0]?.note, 'written after the switch');
    assert.equal(await router.metrics.count('mirrors', 'mirrored'), 1);

    await runActivity(activities.removeWriteGuard, { connection: 'old', tables: [table] });
    await db.pools.old.query(`UPDATE ${name} SET note = 'allowed again' WHERE id = 3`);
  });
});
