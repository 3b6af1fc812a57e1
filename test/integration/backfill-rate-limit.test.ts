// The row limit is a limit (issue 13, item 4): a backfill limited to 2,000 rows/s, whose worker is
// killed mid-copy and started again only after a stall, copies no faster after the stall than the
// limit plus a bounded burst. (The old limit, an average since the start, let the stall's whole
// allowance out at once: ~3× the limit for half a minute.) Rates come from the chunks' commit times
// on new, measured, not waited for.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { HELPER_SCHEMA } from '../../db/helper-schema';
import { compareTables } from '../../db/verifier';
import { bucketCapacity, chunksPerBatch } from '../../model/token-bucket';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { backfillTableWorkflow } from '../../workflows';
import { backfillInput } from '../harness/backfill';
import { waitFor } from '../harness/wait';
import { databasePools, temporalClient } from '../harness/servers';
import { startWorkerProcess, type WorkerProcess } from '../harness/worker-process';

describe('backfill row limit', () => {
  const pools = databasePools();
  const workers: WorkerProcess[] = [];

  after(async () => {
    await Promise.all(workers.map((worker) => worker.kill('SIGKILL')));
    await pools.end();
  });

  it('holds after a stall and a worker restart: the limit plus a bounded burst', async () => {
    const suffix = randomUUID().slice(0, 8);
    const table = { schema: 'public', table: `limited_${suffix}` };
    const migration = `test-limit-${suffix}`;
    const rows = 40_000;
    const chunkSize = 500;
    const partitions = 2;
    const limit = 2000;
    const stallSeconds = 8;
    await pools.old.query(sampleTableDdl(table));
    await pools.new.query(sampleTableDdl(table));
    await seedSampleRows(pools.old, table, rows, { step: 2 });

    const taskQueue = `test-limit-${suffix}`;
    const startWorker = () => {
      const worker = startWorkerProcess(taskQueue);
      workers.push(worker);
      return worker;
    };
    const markers = async () => {
      const { rows: exists } = await pools.new.query<{ ok: boolean }>(
        `SELECT to_regclass('${HELPER_SCHEMA}.backfill_chunks') IS NOT NULL AS ok`,
      );
      if (exists[0]?.ok !== true) return [];
      const { rows: found } = await pools.new.query<{ at: number; rows: number }>(
        `SELECT extract(epoch FROM copied_at)::float8 * 1000 AS at, rows_read AS rows
           FROM ${HELPER_SCHEMA}.backfill_chunks WHERE migration = $1 ORDER BY copied_at`,
        [migration],
      );
      return found;
    };

    const client = await temporalClient();
    try {
      const first = startWorker();
      const handle = await client.workflow.start(backfillTableWorkflow, {
        taskQueue,
        workflowId: `backfill-limited-${suffix}`,
        args: [
          backfillInput(table, chunkSize, {
            migration,
            partitions,
            chunksInFlight: 2,
            throttle: { maxRowsPerSecond: limit },
          }),
        ],
      });
      await waitFor('10 chunks', async () => (await markers()).length >= 10);
      await first.kill('SIGKILL');
      const { rows: killed } = await pools.new.query<{ at: number }>(
        `SELECT extract(epoch FROM clock_timestamp())::float8 * 1000 AS at`,
      );
      const killedAt = killed[0]!.at;
      // The stall: no worker until the last chunk committed is this old (the database's clock).
      await waitFor(`a ${stallSeconds} s stall`, async () => {
        const { rows: age } = await pools.new.query<{ seconds: number }>(
          `SELECT extract(epoch FROM clock_timestamp() - max(copied_at))::float8 AS seconds
             FROM ${HELPER_SCHEMA}.backfill_chunks WHERE migration = $1`,
          [migration],
        );
        return (age[0]?.seconds ?? 0) >= stallSeconds;
      });
      const second = startWorker();
      const result = await handle.result();
      await second.kill('SIGTERM');
      assert.equal(result.rowsCopied, rows);
      const comparison = await compareTables(pools.old, pools.new, table, ['id']);
      assert.deepEqual(comparison.differences, []);

      const all = await markers();
      const afterStall = all.filter((marker) => marker.at > killedAt);
      assert.ok(afterStall.length > 10, `${afterStall.length} chunks after the stall`);
      const resumedAt = afterStall[0]!.at;
      const windowMs = 4000;
      const rowsIn = (from: number) =>
        afterStall
          .filter((marker) => marker.at >= from && marker.at < from + windowMs)
          .reduce((sum, marker) => sum + marker.rows, 0);
      const firstWindow = rowsIn(resumedAt);
      const peak = Math.max(...afterStall.map((marker) => rowsIn(marker.at)));
      // Each partition: one second of its share in the bucket, plus the batch it may start in debt,
      // plus the batches in flight when the worker died (taken before the stall, retried after it).
      const share = limit / partitions;
      const batch = chunksPerBatch(share, chunkSize, 8) * chunkSize;
      const burst = partitions * (bucketCapacity(share) + batch + 2 * batch);
      const bound = (limit * windowMs) / 1000 + burst;
      const lastAt = afterStall[afterStall.length - 1]!.at;
      const overall =
        (afterStall.reduce((sum, marker) => sum + marker.rows, 0) / (lastAt - resumedAt)) * 1000;
      console.log(
        `  limit ${limit} rows/s; after a ${((resumedAt - killedAt) / 1000).toFixed(1)} s stall and a restart: ${firstWindow} rows in the first ${windowMs / 1000} s (${Math.round(firstWindow / (windowMs / 1000))} rows/s), peak ${peak} in any ${windowMs / 1000} s (bound ${bound}), ${Math.round(overall)} rows/s on average to the end`,
      );
      assert.ok(
        firstWindow <= bound,
        `${firstWindow} rows in the first ${windowMs} ms after the stall; bound ${bound}`,
      );
      assert.ok(peak <= bound, `peak ${peak} rows in ${windowMs} ms; bound ${bound}`);
    } finally {
      await client.connection.close();
    }
  });
});
