// Hazard 10 through the real workflow: a table whose definition differs on new, a table missing on
// new, and an unknown table are refused before any row moves, with the difference shown; asked to,
// the migration creates the missing table from old's definition and copies it exactly. A Citus
// distribution column that cannot distribute the table, or one for a new without Citus, is refused.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { quoteTable } from '../../db/sql';
import { compareTables } from '../../db/verifier';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { refusalMessage, runBackfill } from '../harness/backfill';
import { databasePools, installQuietRuntime } from '../harness/servers';

installQuietRuntime();

describe('inspector: refusals before any row moves', () => {
  const pools = databasePools();
  const suffix = randomUUID().slice(0, 8);
  const named = (name: string) => ({ schema: 'public', table: `${name}_${suffix}` });
  after(() => pools.end());

  async function rowsOnNew(table: { schema: string; table: string }): Promise<number> {
    const { rows } = await pools.new.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteTable(table)}`);
    return Number(rows[0]?.n);
  }

  it('refuses a table whose columns differ on new, showing each difference, and copies nothing', async () => {
    const table = named('mismatch');
    await pools.old.query(sampleTableDdl(table));
    await seedSampleRows(pools.old, table, 10);
    await pools.new.query(sampleTableDdl(table));
    await pools.new.query(
      `ALTER TABLE ${quoteTable(table)} ALTER COLUMN amount TYPE numeric(10, 0), DROP COLUMN note`,
    );
    await assert.rejects(runBackfill(table, 1000), (err) => {
      const message = refusalMessage(err);
      assert.match(message, /differs between old and new/);
      assert.match(message, /column "amount": type numeric\(14,2\) on old, numeric\(10,0\) on new/);
      assert.match(message, /column "note": missing on new \(old has text\)/);
      return true;
    });
    assert.equal(await rowsOnNew(table), 0);
  });

  it('refuses a table that new does not have, saying how to proceed', async () => {
    const table = named('absent');
    await pools.old.query(sampleTableDdl(table));
    await assert.rejects(runBackfill(table, 1000), (err) => {
      assert.match(refusalMessage(err), /does not exist on the new database .*set createTables: true/);
      return true;
    });
  });

  it('refuses a table that old does not have', async () => {
    await assert.rejects(runBackfill(named('unknown'), 1000), (err) => {
      assert.match(refusalMessage(err), /table "public"\."unknown_\w+" does not exist on the old database/);
      return true;
    });
  });

  it("creates a missing table on new from old's definition when asked, then copies it exactly", async () => {
    const table = named('created');
    await pools.old.query(sampleTableDdl(table));
    await seedSampleRows(pools.old, table, 1500, { step: 7 });
    const { result } = await runBackfill(table, 1000, { createTargetTable: true });
    assert.equal(result.rowsCopied, 1500);
    const comparison = await compareTables(pools.old, pools.new, table, ['id']);
    assert.deepEqual(comparison.differences, []);
    assert.equal(comparison.rowsNew, 1500);
  });

  it('refuses a Citus distribution column outside the primary key, and one for a new without Citus, creating nothing', async () => {
    const table = named('distributed');
    await pools.old.query(sampleTableDdl(table));
    await seedSampleRows(pools.old, table, 10);
    await assert.rejects(
      runBackfill(table, 1000, { createTargetTable: true, distributionColumn: 'customer_id' }),
      (err) => {
        assert.match(
          refusalMessage(err),
          /^distributionColumn customer_id of "public"\."distributed_\w+": Citus distributes .* by customer_id only when its primary key and every unique constraint include it, and primary key \S+ \(id\) does not/,
        );
        return true;
      },
    );
    await assert.rejects(
      runBackfill(table, 1000, { createTargetTable: true, distributionColumn: 'id' }),
      (err) => {
        assert.match(
          refusalMessage(err),
          /^distributionColumn is set for "public"\."distributed_\w+", but the new database \(.*\) has no Citus \(create_distributed_table is missing\)/,
        );
        return true;
      },
    );
    const created = await pools.new.query<{ found: string | null }>(`SELECT to_regclass($1) AS found`, [
      quoteTable(table),
    ]);
    assert.equal(created.rows[0]?.found, null, 'nothing created on new');
  });
});
