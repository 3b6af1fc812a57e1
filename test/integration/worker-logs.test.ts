// Issue 14, item 5: the worker's log as an operator reads it. Webpack's bundle report is not at
// info (the bundle's size is, in one line); workflow log lines carry the migration and the table as
// fields; a row limit that holds back every chunk is logged once per reason and partition every 30 s,
// not once per chunk, and a progress line every few seconds; activity lines (the SDK's and the project's) carry the migration and the table
// of the activity's input as fields too (worker/activity-log-attributes.ts). Counts are printed.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { backfillTableWorkflow } from '../../workflows';
import { backfillInput } from '../harness/backfill';
import { databasePools, temporalClient } from '../harness/servers';
import { waitUntil } from '../harness/wait';
import { startWorkerProcess, type WorkerProcess } from '../harness/worker-process';

describe("the worker's log", () => {
  const pools = databasePools();
  let worker: WorkerProcess | undefined;

  after(async () => {
    await worker?.kill('SIGTERM');
    await pools.end();
  });

  it('has no bundle dump at info, migration and table as fields, and few throttle lines', async () => {
    const suffix = randomUUID().slice(0, 8);
    const table = { schema: 'public', table: `logged_${suffix}` };
    const migration = `test-logs-${suffix}`;
    await pools.old.query(sampleTableDdl(table));
    await pools.new.query(sampleTableDdl(table));
    await seedSampleRows(pools.old, table, 4000);
    const taskQueue = `test-logs-${suffix}`;
    // At debug: the activities' own lines (a chunk copied, an activity completed) are debug lines.
    worker = startWorkerProcess(taskQueue, { LOG_LEVEL: 'debug' });
    const lines = worker.lines;
    await waitUntil('the worker to run', () => lines.some((line) => line.state === 'RUNNING'));

    const client = await temporalClient();
    try {
      const handle = await client.workflow.start(backfillTableWorkflow, {
        taskQueue,
        workflowId: `backfill-logs-${suffix}`,
        args: [
          backfillInput(table, 100, {
            migration,
            partitions: 2,
            chunksPerActivity: 1,
            // 8 s of copying: longer than a progress report's 5 s.
            throttle: { maxRowsPerSecond: 500 },
          }),
        ],
      });
      const result = await handle.result();
      assert.equal(result.rowsCopied, 4000);
    } finally {
      await client.connection.close();
    }

    const info = lines.filter((line) => line.level === 30);
    const multiLine = info.filter((line) => String(line.msg).includes('\n'));
    assert.deepEqual(
      multiLine.map((line) => String(line.msg).slice(0, 60)),
      [],
      'no multi-line report at info',
    );
    assert.ok(
      info.some((line) => line.msg === 'Workflow bundle created'),
      'the bundle in one line',
    );

    // The project's activity line and the SDK's, from the chunk copier (its input names both).
    const chunkLines = lines.filter((line) => line.msg === 'chunk copied');
    const completed = lines.filter(
      (line) => line.msg === 'Activity completed' && line.activityType === 'copyChunks',
    );
    assert.ok(chunkLines.length > 0, 'the copier logged its chunks');
    assert.ok(completed.length > 0, "the SDK logged the copier's activities");
    for (const line of [...chunkLines, ...completed]) {
      assert.equal(line.migration, migration, `${String(line.msg)} names the migration`);
      assert.equal(line.table, `public.${table.table}`, `${String(line.msg)} names the table`);
    }

    const throttled = lines.filter((line) => line.msg === 'backfill throttled');
    assert.ok(throttled.length > 0, 'the limit held the copy back');
    for (const line of throttled) {
      assert.equal(line.migration, migration);
      assert.equal(line.table, `public.${table.table}`);
    }
    // 40 chunks of 100 rows at 500 rows/s: a partition logs a reason once per 30 s however many
    // chunks it holds back (a new reason, say the latency brake's lower share, gets a line of its own).
    const perReason = new Map<string, number>();
    for (const line of throttled) {
      const key = `${String(line.workflowId)}: ${String(line.reason)}`;
      perReason.set(key, (perReason.get(key) ?? 0) + 1);
    }
    assert.ok(
      [...perReason.values()].every((n) => n === 1),
      `throttle lines per partition and reason: ${JSON.stringify([...perReason])}`,
    );
    assert.ok(throttled.length < 40, `${throttled.length} throttle lines for 40 chunks`);
    // Progress instead: a line with the figures every few seconds per table, not one per chunk.
    const progressLines = lines.filter((line) => line.msg === 'backfill progress');
    assert.ok(progressLines.length > 0, 'the copy logged its progress');
    assert.ok(progressLines.length < 40, `${progressLines.length} progress lines for 40 chunks`);
    for (const line of progressLines) {
      assert.equal(line.table, `public.${table.table}`);
      assert.equal(typeof line.rowsCopied, 'number');
      assert.equal(typeof line.rowsPerSecond, 'number');
    }
    const waits = throttled.reduce((n, line) => n + Number(line.waitsSinceLastLine ?? 0), 0);
    console.log(
      `worker log: ${lines.length} lines, ${info.length} at info, ${throttled.length} throttle lines for 40 chunks (${waits} waits folded into them by the time they were written)`,
    );
  });
});
