// The query benchmark (issue 5, part 3) against real PostgreSQL 15 and 17: configured reads run on
// both sides and get p50/p95 and new/old ratios; a write is refused and never runs on either side;
// without pg_stat_statements the top-statements source says why it is skipped.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { createActivities } from '../../activities';
import { ConnectionPools } from '../../db/pools';
import { quoteTable } from '../../db/sql';
import { resolveConnections } from '../../config/connections';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { databasePools, testSite } from '../harness/servers';
import { runActivity } from '../harness/activity';
import { MockActivityEnvironment } from '@temporalio/testing';
import type { QueryBenchmarkResult } from '../../model/query-benchmark';

describe('query benchmark', () => {
  const pools = databasePools();
  const migrationPools = new ConnectionPools(resolveConnections(testSite('unused'), process.env));
  const activities = createActivities({ pools: migrationPools });
  const table = { schema: 'public', table: `benchmarked_${randomUUID().slice(0, 8)}` };
  const name = quoteTable(table);

  before(async () => {
    for (const pool of [pools.old, pools.new]) {
      await pool.query(sampleTableDdl(table));
      await seedSampleRows(pool, table, 20_000);
      await pool.query(`ANALYZE ${name}`);
    }
    // Old has an index the query uses; new does not, so the query is slower there.
    await pools.old.query(`CREATE INDEX ON ${name} (customer_id)`);
  });

  after(async () => {
    await migrationPools.end();
    await pools.end();
  });

  it('measures reads on both sides, refuses writes, and says why top statements are missing', async () => {
    const result = await runActivity(activities.benchmarkQueries, {
      servers: await activities.bindServers({ migration: 'test' }),
      queries: [
        { name: 'orders of a customer', sql: `SELECT * FROM ${name} WHERE customer_id = $1`, params: [7919] },
        { name: 'count', sql: `SELECT count(*) FROM ${name}` },
        { name: 'sneaky write', sql: `WITH d AS (DELETE FROM ${name} RETURNING 1) SELECT count(*) FROM d` },
      ],
      topStatements: 5,
      runs: 10,
    });
    assert.deepEqual(
      result.queries.map((query) => query.name),
      ['orders of a customer', 'count'],
    );
    for (const query of result.queries) {
      for (const side of [query.old, query.new]) assert.ok(side.p50 > 0 && side.p95 >= side.p50);
      assert.ok(query.ratioP50 > 0 && query.ratioP95 > 0);
      assert.match(query.fingerprint, /^[0-9a-f]{12}$/);
    }
    const skipped = Object.fromEntries(result.skipped.map((entry) => [entry.name, entry.reason]));
    assert.match(skipped['sneaky write'] ?? '', /not a read.*never run/);
    assert.match(skipped['top statements'] ?? '', /pg_stat_statements is not available/);
    const counted = await pools.old.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${name}`);
    assert.equal(counted.rows[0]?.n, 20_000, 'the write was not run');
    const indexed = result.queries[0]!;
    console.log(
      `query benchmark: "${indexed.name}" p50 old ${indexed.old.p50.toFixed(3)} ms, new ${indexed.new.p50.toFixed(3)} ms (no index on new): ratio ${indexed.ratioP50.toFixed(2)}`,
    );
  });

  it('waits after each run as long as it took, and beats after every run', async () => {
    const env = new MockActivityEnvironment();
    const beats: Array<{ at: number; ms: number }> = [];
    env.on('heartbeat', (details: { ms: number }) => beats.push({ at: performance.now(), ms: details.ms }));
    const runs = 4;
    const result: QueryBenchmarkResult = await env.run(activities.benchmarkQueries, {
      servers: await activities.bindServers({ migration: 'test' }),
      queries: [{ name: 'series', sql: 'SELECT count(*) FROM generate_series(1, 300000)' }],
      runs,
    });
    assert.equal(result.queries.length, 1, JSON.stringify(result.skipped));
    assert.equal(beats.length, 2 * runs, 'a beat after every timed run on each side');
    // Between two beats: the pause after the first run (as long as it took), then the next run.
    for (let i = 1; i < beats.length; i++) {
      const gap = beats[i]!.at - beats[i - 1]!.at;
      const atLeast = beats[i - 1]!.ms + beats[i]!.ms - 1; // timers keep whole milliseconds
      assert.ok(
        gap >= atLeast,
        `run ${i + 1} began ${gap.toFixed(1)} ms after the one before ended (at least ${atLeast.toFixed(1)})`,
      );
    }
  });
});
