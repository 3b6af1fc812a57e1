// Hazards 1, 2 and 6 of DESIGN.md, provoked on purpose: writers that bypass any router insert,
// update and delete rows on old while the backfill copies the table; change capture and the
// reconciliation workflow carry their writes to new. At the end new equals old row for row.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import type { CopyChunkInput } from '../../activities/copier';
import { HELPER_SCHEMA } from '../../db/helper-schema';
import type { TableRef } from '../../model/tables';
import { quoteTable } from '../../db/sql';
import { compareTables } from '../../db/verifier';
import { readBackfillProgress } from '../../client/backfill-progress';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { backfillTableWorkflow, reconciliationWorkflow } from '../../workflows';
import { drainAndStopSignal, reconciliationStatusQuery } from '../../workflows/messages';
import { backfillHistories, backfillInput, startRunningWorker } from '../harness/backfill';
import { waitFor } from '../harness/wait';
import { databasePools, installQuietRuntime } from '../harness/servers';
import { workflowsPath } from '../harness/workflow-histories';
import { startWriteLoad } from '../../provision/write-load';

installQuietRuntime();

describe('backfill under concurrent writes that bypass the router', () => {
  const pools = databasePools();
  const suffix = randomUUID().slice(0, 8);
  /** The row a hook changes on old between a chunk's read and its write. */
  const staleChunk = { updatedId: 30, deletedId: 40, seen: false };
  let testWorker: Awaited<ReturnType<typeof startRunningWorker>>;

  async function changeRowsUnderTheChunk(chunk: CopyChunkInput): Promise<void> {
    if (!chunk.table.table.startsWith('stale_') || staleChunk.seen || chunk.range.lower !== null) return;
    staleChunk.seen = true;
    const name = quoteTable(chunk.table);
    // This chunk has read rows 1..100; now they change on old, before the chunk writes them to new.
    await pools.old.query(`UPDATE ${name} SET status = 'changed-after-read' WHERE id = $1`, [
      staleChunk.updatedId,
    ]);
    await pools.old.query(`DELETE FROM ${name} WHERE id = $1`, [staleChunk.deletedId]);
    // ... and reconciliation carries both changes to new before the stale chunk lands.
    await waitFor('the change log to drain', async () => {
      const { rows } = await pools.old.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM ${HELPER_SCHEMA}.change_log WHERE table_name = $1`,
        [chunk.table.table],
      );
      return rows[0]?.n === 0;
    });
  }

  before(async () => {
    testWorker = await startRunningWorker('live-writes', {
      copierHooks: { afterChunkStaged: changeRowsUnderTheChunk },
    });
  });

  after(async () => {
    await testWorker.stop();
    await pools.end();
  });

  async function createTable(prefix: string, rows: number, step: number): Promise<TableRef> {
    const table = { schema: 'public', table: `${prefix}_${suffix}` };
    await pools.old.query(sampleTableDdl(table));
    await pools.new.query(sampleTableDdl(table));
    await seedSampleRows(pools.old, table, rows, { step });
    return table;
  }

  function startReconciliation(name: string): Promise<WorkflowHandle<typeof reconciliationWorkflow>> {
    return testWorker.client.workflow.start(reconciliationWorkflow, {
      taskQueue: testWorker.taskQueue,
      workflowId: `reconcile-${name}-${suffix}`,
      args: [{ migration: `test-${name}`, from: 'old', to: 'new', idlePollMs: 200 }],
    });
  }

  it('a chunk read before an update and a delete neither overwrites the update nor brings the row back', async () => {
    const table = await createTable('stale', 300, 1);
    // A dual write already put row 1 on new, so the first chunk cannot stream straight into the
    // table: it stages its rows first, and the hook changes rows on old in between.
    await seedSampleRows(pools.new, table, 1);
    const reconciliation = await startReconciliation('stale');
    const backfill = await testWorker.client.workflow.start(backfillTableWorkflow, {
      taskQueue: testWorker.taskQueue,
      workflowId: `backfill-stale-${suffix}`,
      args: [backfillInput(table, 100, { migration: 'test-stale' })],
    });
    await backfill.result();
    await reconciliation.signal(drainAndStopSignal);
    await reconciliation.result();
    assert.equal(staleChunk.seen, true, 'the hook ran between the read and the write of the first chunk');

    const name = quoteTable(table);
    const updated = await pools.new.query<{ status: string }>(`SELECT status FROM ${name} WHERE id = $1`, [
      staleChunk.updatedId,
    ]);
    assert.equal(updated.rows[0]?.status, 'changed-after-read', 'hazard 1: the stale copy did not win');
    const deleted = await pools.new.query(`SELECT 1 FROM ${name} WHERE id = $1`, [staleChunk.deletedId]);
    assert.equal(deleted.rowCount, 0, 'hazard 2: the deleted row was not resurrected');
    const comparison = await compareTables(pools.old, pools.new, table, ['id']);
    assert.deepEqual(comparison.differences, []);
    assert.equal(comparison.rowsNew, 299);
  });

  it('a mixed insert/update/delete load during the backfill leaves new equal to old row for row', async () => {
    const rows = 20_000;
    const table = await createTable('mixed', rows, 5);
    const reconciliation = await startReconciliation('mixed');
    const load = startWriteLoad(pools.old, table, { writers: 3, maxId: rows * 5, seed: 7 });
    try {
      const backfill = await testWorker.client.workflow.start(backfillTableWorkflow, {
        taskQueue: testWorker.taskQueue,
        workflowId: `backfill-mixed-${suffix}`,
        // Slow enough that the load overlaps the whole copy; small chunks, several partitions, and
        // enough activities for the partitions to continue as new (the test server suggests it early).
        // The latency brake stays on, but never below 2,000 rows/s: on a busy machine it read the
        // three writers as an application it hurt and held the copy at 200 rows/s for two minutes.
        args: [
          backfillInput(table, 50, {
            migration: 'test-mixed',
            chunksPerActivity: 2,
            throttle: { maxRowsPerSecond: 8000, latencyTarget: { minRowsPerSecond: 2000 } },
          }),
        ],
      });
      await backfill.result();
      const progress = await readBackfillProgress(testWorker.client, backfill.workflowId, {
        finishedPartitions: true,
      });
      assert.ok(
        progress.partitions.some((partition) => partition.runs > 1),
        `a partition continued as new mid-copy (runs: ${progress.partitions.map((p) => p.runs).join(', ')})`,
      );
      const histories = await backfillHistories(testWorker.client, backfill);
      assert.ok(histories.length > 2, `several partitions ran (${histories.length - 1})`);
      for (const { history, workflowId } of histories) {
        await Worker.runReplayHistory({ workflowsPath }, history, workflowId);
      }
    } finally {
      const counts = await load.stop();
      assert.ok(counts.inserts > 50 && counts.updates > 50 && counts.deletes > 50, JSON.stringify(counts));
    }
    const status = await reconciliation.query(reconciliationStatusQuery);
    assert.ok(status.entriesApplied > 0, 'the change log carried the load to new');
    await reconciliation.signal(drainAndStopSignal);
    const final = await reconciliation.result();
    assert.equal(final.changeLogBacklog, 0);
    const comparison = await compareTables(pools.old, pools.new, table, ['id']);
    assert.deepEqual(comparison.differences.slice(0, 5), []);
    assert.equal(comparison.rowsNew, comparison.rowsOld);
  });
});
