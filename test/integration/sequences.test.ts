// Sequences and identity columns on new (hazard 9's building block) against real PostgreSQL 15 and
// 17: after advanceSequences, rows inserted on new take values above everything old handed out or
// stored (explicit ids included); running it again moves nothing; a new that is ahead stays ahead;
// a descending sequence is refused with a clear message.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createActivities } from '../../activities';
import { ConnectionPools } from '../../db/pools';
import { quoteTable } from '../../db/sql';
import { resolveConnections } from '../../config/connections';
import { refusalMessage } from '../harness/backfill';
import { databasePools, testSite } from '../harness/servers';
import { runActivity } from '../harness/activity';

describe('advancing sequences on new', () => {
  const pools = databasePools();
  const migrationPools = new ConnectionPools(resolveConnections(testSite('unused'), process.env));
  const activities = createActivities({ pools: migrationPools });
  const table = { schema: 'public', table: `sequenced_${randomUUID().slice(0, 8)}` };
  const name = quoteTable(table);

  before(async () => {
    for (const pool of [pools.old, pools.new]) {
      await pool.query(
        `CREATE TABLE ${name} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n serial, note text)`,
      );
    }
    await pools.old.query(`INSERT INTO ${name} (note) SELECT 'old ' || g FROM generate_series(1, 500) AS g`);
    // A row written with an explicit id, above what the sequence handed out.
    await pools.old.query(
      `INSERT INTO ${name} (id, n, note) OVERRIDING SYSTEM VALUE VALUES (900, 3, 'explicit')`,
    );
    // The backfill copies values, not sequence positions: new's sequences are still at their start.
    const { rows } = await pools.old.query<{ id: string; n: number; note: string }>(
      `SELECT id, n, note FROM ${name}`,
    );
    for (const row of rows) {
      await pools.new.query(`INSERT INTO ${name} (id, n, note) OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3)`, [
        row.id,
        row.n,
        row.note,
      ]);
    }
  });

  after(async () => {
    await migrationPools.end();
    await pools.end();
  });

  it('moves identity and serial sequences on new past everything old handed out, once', async () => {
    const first = await runActivity(activities.advanceSequences, {
      servers: await activities.bindServers({ migration: 'test' }),
      from: 'old',
      to: 'new',
      tables: [table],
      margin: 100,
    });
    const byColumn = Object.fromEntries(first.map((entry) => [entry.column, entry]));
    assert.equal(byColumn.id?.highestSeen, '900', 'the explicit id counts, not only the sequence');
    assert.equal(byColumn.id?.after, '1000');
    assert.equal(byColumn.n?.highestSeen, '500');
    assert.equal(byColumn.n?.after, '600');
    assert.ok(first.every((entry) => entry.moved));

    const inserted = await pools.new.query<{ id: string; n: number }>(
      `INSERT INTO ${name} (note) VALUES ('written on new') RETURNING id, n`,
    );
    assert.deepEqual(inserted.rows[0], { id: '1001', n: 601 });
    const collision = await pools.old.query(`SELECT 1 FROM ${name} WHERE id = $1`, [inserted.rows[0]?.id]);
    assert.equal(collision.rowCount, 0);

    const again = await runActivity(activities.advanceSequences, {
      servers: await activities.bindServers({ migration: 'test' }),
      from: 'old',
      to: 'new',
      tables: [table],
      margin: 100,
    });
    assert.ok(
      again.every((entry) => !entry.moved),
      'a second run moves nothing backwards or forwards',
    );
    assert.deepEqual(
      again.map((entry) => entry.after),
      first.map((entry) => (entry.column === 'id' ? '1001' : '601')),
    );
  });

  it('leaves a sequence that is already ahead, and refuses a descending one', async () => {
    await pools.new.query(`SELECT setval(pg_get_serial_sequence($1, 'n'), 5000)`, [name]);
    const ahead = await runActivity(activities.advanceSequences, {
      servers: await activities.bindServers({ migration: 'test' }),
      from: 'old',
      to: 'new',
      tables: [table],
    });
    assert.equal(ahead.find((entry) => entry.column === 'n')?.after, '5000');

    const descending = { schema: 'public', table: `descending_${randomUUID().slice(0, 8)}` };
    await pools.new.query(
      `CREATE TABLE ${quoteTable(descending)} (id bigint GENERATED ALWAYS AS IDENTITY (INCREMENT BY -1 START WITH -1) PRIMARY KEY)`,
    );
    await pools.old.query(`CREATE TABLE ${quoteTable(descending)} (id bigint PRIMARY KEY)`);
    const servers = await activities.bindServers({ migration: 'test' });
    await assert.rejects(
      runActivity(activities.advanceSequences, { servers, from: 'old', to: 'new', tables: [descending] }),
      (err: unknown) => /descending sequence/.test(refusalMessage(err)),
    );
  });
});
