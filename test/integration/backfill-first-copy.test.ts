// The first real copy: a workflow on the real Temporal dev server whose activities read rows from
// the old PostgreSQL and write them to the new one (different majors in the default test run).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Worker } from '@temporalio/worker';
import { compareTables } from '../../db/verifier';
import { quoteTable } from '../../db/sql';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { refusalMessage, runBackfill } from '../harness/backfill';
import { databasePools, installQuietRuntime } from '../harness/servers';
import { workflowsPath } from '../harness/workflow-histories';

installQuietRuntime();

describe('backfill: first copy of a table from old to new through Temporal', () => {
  const pools = databasePools();
  const suffix = randomUUID().slice(0, 8);

  after(() => pools.end());

  async function createOnBothSides(name: string): Promise<{ schema: string; table: string }> {
    const table = { schema: 'public', table: `${name}_${suffix}` };
    await pools.old.query(sampleTableDdl(table));
    await pools.new.query(sampleTableDdl(table));
    return table;
  }

  let table: { schema: string; table: string };
  before(async () => {
    table = await createOnBothSides('orders');
    // Sparse keys with large gaps: 2,345 rows spread over ids 1000..2,345,000.
    await seedSampleRows(pools.old, table, 2345, { step: 1000 });
  });

  it('copies every row with every column equal, in 1000-row chunks', async () => {
    const { result, progress } = await runBackfill(table, 1000);
    assert.equal(result.rowsCopied, 2345);
    assert.equal(result.chunksDone, 3);
    assert.equal(progress.phase, 'done');
    const comparison = await compareTables(pools.old, pools.new, table, ['id']);
    assert.equal(comparison.rowsOld, 2345);
    assert.deepEqual(comparison.differences, []);
    assert.equal(comparison.rowsNew, 2345);
  });

  it('never overwrites a row that new already has (a newer write wins over the copy)', async () => {
    const other = await createOnBothSides('newer');
    await seedSampleRows(pools.old, other, 50);
    await pools.new
      .query(`INSERT INTO ${quoteTable(other)} SELECT * FROM (VALUES (7::bigint)) v(id) CROSS JOIN LATERAL (
      SELECT 1::bigint, 'newer', 1.00::numeric, 'USD', NULL::text[], NULL::jsonb, NULL::bytea, 'written on new', now(), now()) r`);
    const { result } = await runBackfill(other, 20);
    assert.equal(result.rowsCopied, 49);
    const { rows } = await pools.new.query<{ status: string }>(
      `SELECT status FROM ${quoteTable(other)} WHERE id = 7`,
    );
    assert.equal(rows[0]?.status, 'newer');
  });

  it('copies an empty table as zero rows and finishes', async () => {
    const empty = await createOnBothSides('empty');
    const { result } = await runBackfill(empty, 1000);
    assert.deepEqual(result, { rowsCopied: 0, chunksDone: 0 });
  });

  it('produces a history that replays deterministically', async () => {
    const replayed = await createOnBothSides('replayed');
    await seedSampleRows(pools.old, replayed, 30);
    const { histories } = await runBackfill(replayed, 10);
    assert.equal(histories.length, 2, 'the table workflow and one partition');
    for (const { history, workflowId } of histories) {
      await Worker.runReplayHistory({ workflowsPath }, history, workflowId);
    }
  });

  it('refuses a table without a primary key, naming the table and the fix', async () => {
    const bare = { schema: 'public', table: `nokey_${suffix}` };
    await pools.old.query(`CREATE TABLE ${quoteTable(bare)} (id bigint, v text)`);
    await assert.rejects(runBackfill(bare, 1000), (err: Error) => {
      assert.match(refusalMessage(err), new RegExp(`${bare.table}.*has no primary key.*add a primary key`));
      return true;
    });
  });
});
