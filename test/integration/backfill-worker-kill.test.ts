// Hazard 5: the worker dies (SIGKILL) in the middle of chunks, several times. Each chunk commits its
// rows and its done-marker together, so a retried chunk neither duplicates nor skips rows; the rows
// copied again after a kill are at most the chunks that were in flight.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { HELPER_SCHEMA } from '../../db/helper-schema';
import { compareTables } from '../../db/verifier';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { backfillTableWorkflow } from '../../workflows';
import { backfillInput } from '../harness/backfill';
import { waitFor } from '../harness/wait';
import { databasePools, temporalClient } from '../harness/servers';
import { startWorkerProcess, type WorkerProcess } from '../harness/worker-process';

describe('backfill survives its worker being killed', () => {
  const pools = databasePools();
  const workers: WorkerProcess[] = [];

  after(async () => {
    await Promise.all(workers.map((worker) => worker.kill('SIGKILL')));
    await pools.end();
  });

  it('SIGKILL three times mid-copy: new equals old, and only in-flight chunks were copied again', async () => {
    const suffix = randomUUID().slice(0, 8);
    const table = { schema: 'public', table: `killed_${suffix}` };
    const migration = `test-kill-${suffix}`;
    const rows = 40_000;
    const chunkSize = 400;
    const partitions = 4;
    const chunksInFlight = 2;
    await pools.old.query(sampleTableDdl(table));
    await pools.new.query(sampleTableDdl(table));
    await seedSampleRows(pools.old, table, rows, { step: 3 });

    const taskQueue = `test-kill-${suffix}`;
    const startWorker = () => {
      const worker = startWorkerProcess(taskQueue, { LOG_LEVEL: 'debug' });
      workers.push(worker);
      return worker;
    };
    const chunksDone = async () => {
      const { rows: exists } = await pools.new.query<{ ok: boolean }>(
        `SELECT to_regclass('${HELPER_SCHEMA}.backfill_chunks') IS NOT NULL AS ok`,
      );
      if (exists[0]?.ok !== true) return 0;
      const { rows: found } = await pools.new.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${HELPER_SCHEMA}.backfill_chunks WHERE migration = $1`,
        [migration],
      );
      return found[0]?.n ?? 0;
    };

    const client = await temporalClient();
    try {
      let worker = startWorker();
      const handle = await client.workflow.start(backfillTableWorkflow, {
        taskQueue,
        workflowId: `backfill-killed-${suffix}`,
        args: [
          backfillInput(table, chunkSize, {
            migration,
            partitions,
            chunksInFlight,
            // Slow enough for three kills to land mid-copy.
            throttle: { maxRowsPerSecond: 4000 },
          }),
        ],
      });
      const kills = [15, 40, 65];
      for (const atChunk of kills) {
        await waitFor(`${atChunk} chunks`, async () => {
          if (worker.child.exitCode !== null) {
            throw new Error(`the worker exited: ${JSON.stringify(worker.lines.slice(-3))}`);
          }
          return (await chunksDone()) >= atChunk;
        }).catch((err: Error) => {
          throw new Error(
            `${err.message}; the worker's last log lines: ${JSON.stringify(worker.lines.slice(-4))}`,
          );
        });
        await worker.kill('SIGKILL');
        worker = startWorker();
      }
      const result = await handle.result();
      await worker.kill('SIGTERM');

      assert.equal(result.rowsCopied, rows);
      const comparison = await compareTables(pools.old, pools.new, table, ['id']);
      assert.deepEqual(comparison.differences, []);
      assert.equal(comparison.rowsNew, rows);

      // Every row any attempt wrote into the table, committed or rolled back with its dying session,
      // is counted in n_tup_ins once the sessions are gone (no other writer touches this table).
      await waitFor('the killed workers’ sessions to end', async () => {
        const { rows: sessions } = await pools.new.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'pg-live-migrate%'`,
        );
        return sessions[0]?.n === 0;
      });
      const { rows: stats } = await pools.new.query<{ inserted: string }>(
        `SELECT n_tup_ins AS inserted FROM pg_stat_user_tables WHERE relid = $1::regclass`,
        [`public.${table.table}`],
      );
      const copiedAgain = Number(stats[0]?.inserted ?? 0) - rows;
      // Each kill loses at most the chunk each in-flight activity was copying.
      const bound = kills.length * partitions * chunksInFlight * chunkSize;
      assert.ok(copiedAgain >= 0, `n_tup_ins counts every row at least once (${copiedAgain})`);
      assert.ok(copiedAgain <= bound, `${copiedAgain} rows copied again; at most ${bound} were in flight`);
      const { rows: chunks } = await pools.new.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${HELPER_SCHEMA}.backfill_chunks WHERE migration = $1`,
        [migration],
      );
      console.log(
        `  ${kills.length} kills: ${copiedAgain} rows copied again (at most ${bound} could be in flight); ${chunks[0]?.n} chunks, each committed once`,
      );
    } finally {
      await client.connection.close();
    }
  });
});
