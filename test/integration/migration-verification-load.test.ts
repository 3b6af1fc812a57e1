// Issue 11, case 8, through the migration workflow on real servers: verification under a writer
// that bypasses the routers and never stops (about 1,500 transactions a second on old, paced)
// tells writes in flight from damage. The dual_write verification reaches 0 reported differences
// and passes without an approval, with the keys that differed while their writes were in flight
// counted as settled or in flight, not as differences. With the writer still running, damage planted
// on new (a row changed only there, rows deleted only there) is reported and holds the migration
// every time it is verified, and a column dropped on new holds it as a schema change.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { quoteTable } from '../../db/sql';
import { MigrationControl, startMigration } from '../../client/migrations';
import { parseMigrationConfig } from '../../config/load';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { startRunningWorker } from '../harness/backfill';
import { waitForMigration } from '../harness/migration';
import { freshDatabases, testMigration } from '../harness/router';
import { installQuietRuntime } from '../harness/servers';

installQuietRuntime();

const ROWS = 20_000;
/** The writer touches these keys only; damage is planted above them. */
const WRITTEN_KEYS = 15_000;
const RATE = 1500;

/** A paced writer on old, past every router: single-row updates, inserts and deletes. */
function startOutsideWriter(url: string, table: string) {
  const pool = new pg.Pool({ connectionString: url, max: 8 });
  pool.on('error', () => undefined);
  let stopping = false;
  let issued = 0;
  let done = 0;
  const failures: string[] = [];
  const started = Date.now();
  const loops = Array.from({ length: 8 }, async () => {
    while (!stopping) {
      const index = issued++;
      const due = started + (index * 1000) / RATE;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      const id = 1 + ((index * 7919) % WRITTEN_KEYS);
      try {
        if (index % 10 === 0) await pool.query(`DELETE FROM ${table} WHERE id = $1`, [id]);
        else if (index % 10 === 1) {
          await pool.query(
            `INSERT INTO ${table} (id, customer_id, status, created_at) VALUES ($1, 1, 'reborn', now())
             ON CONFLICT (id) DO UPDATE SET status = 'reborn'`,
            [id],
          );
        } else {
          await pool.query(`UPDATE ${table} SET amount = coalesce(amount, 0) + 1, note = $2 WHERE id = $1`, [
            id,
            `w${index}`,
          ]);
        }
        done++;
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  });
  return {
    failures,
    rate: () => Math.round((done * 1000) / Math.max(1, Date.now() - started)),
    stop: async () => {
      stopping = true;
      await Promise.all(loops);
      await pool.end();
      return { done, seconds: (Date.now() - started) / 1000 };
    },
  };
}

describe('verification under a writer that never stops', () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  let worker: Awaited<ReturnType<typeof startRunningWorker>>;
  const table = { schema: 'public', table: 'events' };
  const name = quoteTable(table);

  before(async () => {
    db = await freshDatabases('verify_load');
    await db.pools.old.query(sampleTableDdl(table));
    await db.pools.new.query(sampleTableDdl(table));
    await seedSampleRows(db.pools.old, table, ROWS);
    worker = await startRunningWorker('verify-load', undefined, db.env);
  });

  after(async () => {
    await worker.stop();
    await db.end();
  });

  it('reaches 0 differences and passes without approval; damage planted on new holds it every time', async () => {
    const migration = testMigration('verify-load');
    const control = new MigrationControl(worker.client, migration);
    const writer = startOutsideWriter(db.urls.old, name);
    try {
      await startMigration(
        worker.client,
        parseMigrationConfig({
          name: migration,
          tables: ['public.events'],
          chunkSize: 1000,
          cutover: { approvals: ['shadow'], gates: { maxReconciliationBacklog: 100_000 } },
          verification: { chunkSize: 2000, settle: 300 },
          queryBenchmark: { topStatements: 0 },
        }),
        worker.taskQueue,
      );
      const passed = await waitForMigration(
        control,
        'dual_write verified and passed, held before shadow',
        (s) => s.held !== null && s.held.kind !== 'failure',
        3000,
      );
      assert.equal(passed.held?.kind, 'approval', passed.held?.reason);
      const report = passed.tables[0]!.verification!;
      assert.equal(report.differences, 0, JSON.stringify(report.sampleKeys));
      assert.equal(passed.verifiedClean, true);
      assert.ok(
        report.settled + report.inFlight > 0,
        'keys differed while their writes were in flight, and were not reported',
      );
      assert.ok(!passed.events.some((event) => /held: verification/.test(event.text)));
      console.log(
        `verification under ${writer.rate()} writes/s on old: ${report.rowsFrom} rows, ${report.mismatchedChunks} chunks differed, ${report.settled} keys settled, ${report.inFlight} in flight, 0 differences`,
      );

      // Damage on new, with the writer still at work: a row changed only there, rows deleted only there.
      await db.pools.new.query(`UPDATE ${name} SET note = 'planted on new' WHERE id = 19000`);
      await db.pools.new.query(`DELETE FROM ${name} WHERE id > 19990`);
      // Verified again: back to off and forward into dual_write, then once more where it holds.
      await control.rollback('off', 'test');
      for (let round = 1; round <= 2; round++) {
        await control.resume();
        const held = await waitForMigration(
          control,
          `verification round ${round} to hold for the damage`,
          (s) => s.held?.kind === 'verification',
          3000,
        );
        const found = held.tables[0]!.verification!;
        assert.equal(found.differences, 11, `round ${round}: ${JSON.stringify(found.sampleKeys)}`);
        assert.match(held.held!.reason, /verification found 11 rows that differ between old and new/);
        assert.ok(found.sampleKeys.some((key) => key[0] === '19000'));
        // Repaired, and planted again for the next round.
        await db.pools.new.query(`UPDATE ${name} SET note = 'planted on new' WHERE id = 19000`);
        await db.pools.new.query(`DELETE FROM ${name} WHERE id > 19990`);
      }

      // A column dropped on new: a schema change, held as one.
      await db.pools.new.query(`ALTER TABLE ${name} DROP COLUMN note`);
      await control.resume();
      const dropped = await waitForMigration(
        control,
        'the dropped column to hold the migration',
        (s) => s.held?.kind === 'failure' && s.held.cause?.code === 'SchemaChanged',
        3000,
      );
      assert.match(dropped.held!.reason, /column note dropped/);
    } finally {
      const written = await writer.stop();
      assert.deepEqual(writer.failures.slice(0, 3), [], 'the outside writer never failed');
      console.log(`outside writer: ${written.done} writes in ${written.seconds.toFixed(1)} s`);
    }
    await control.abort('test');
  });
});
