// The table's estimated rows (db/inspector.ts), which the copy's progress, its ETA and the latency
// brake's slow start go by: a table just loaded and never analyzed, and a partitioned table (whose
// own estimate autovacuum never sets), are not estimated at zero rows.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { readTableShape } from '../../db/inspector';
import { quoteTable } from '../../db/sql';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { databasePools } from '../harness/servers';
import { waitFor } from '../harness/wait';

describe('inspector: estimated rows', () => {
  const pools = databasePools();
  const suffix = randomUUID().slice(0, 8);
  const side = { name: 'old' as const, display: 'test' };
  after(() => pools.end());

  it('counts the live rows of a table never analyzed, and the planner estimate once it is', async () => {
    const table = { schema: 'public', table: `fresh_${suffix}` };
    await pools.old.query(sampleTableDdl(table));
    await seedSampleRows(pools.old, table, 5000);
    const { rows } = await pools.old.query<{ reltuples: number }>(
      `SELECT reltuples FROM pg_class WHERE oid = $1::regclass`,
      [quoteTable(table)],
    );
    assert.equal(rows[0]?.reltuples, -1, 'never analyzed');
    // The statistics collector has the inserts once their session flushed them (within a second).
    const shape = await waitFor(
      'the inserts counted',
      () => readTableShape(pools.old, table, side),
      (s) => s.estimatedRows > 0,
    );
    assert.equal(shape.estimatedRows, 5000);
    await pools.old.query(`DELETE FROM ${quoteTable(table)} WHERE id <= 1000`);
    await pools.old.query(`ANALYZE ${quoteTable(table)}`);
    assert.equal((await readTableShape(pools.old, table, side)).estimatedRows, 4000);
  });

  it('adds up the leaves of a partitioned table', async () => {
    const table = { schema: 'public', table: `parted_${suffix}` };
    const name = quoteTable(table);
    await pools.old.query(
      `CREATE TABLE ${name} (id bigint PRIMARY KEY, note text) PARTITION BY RANGE (id);
       CREATE TABLE public.parted_low_${suffix} PARTITION OF ${name} FOR VALUES FROM (0) TO (1000);
       CREATE TABLE public.parted_high_${suffix} PARTITION OF ${name} FOR VALUES FROM (1000) TO (MAXVALUE);
       INSERT INTO ${name} SELECT i, 'row ' || i FROM generate_series(1, 3000) i;
       ANALYZE public.parted_low_${suffix}; ANALYZE public.parted_high_${suffix};`,
    );
    const { rows } = await pools.old.query<{ reltuples: number }>(
      `SELECT reltuples FROM pg_class WHERE oid = $1::regclass`,
      [name],
    );
    assert.ok(rows[0]!.reltuples <= 0, `the parent's own estimate is not set: ${rows[0]?.reltuples}`);
    assert.equal((await readTableShape(pools.old, table, side)).estimatedRows, 3000);
  });
});
