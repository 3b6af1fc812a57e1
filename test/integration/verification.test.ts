// Verification (issue 5, part 2) against real PostgreSQL 15 → 17 and a real Temporal server: planted
// differences on new (a missing row, a changed row, extra rows inside and above old's key range) are
// found, reported with sample keys and repaired from old; a key whose write is still in flight when
// its chunk is compared (its change pending in the change log) settles once synced, or counts as in
// flight while its sync has not come, and is never reported; a difference with nothing pending is
// reported even on a row old changed meanwhile; a second run finds nothing, across continue-as-new;
// the histories replay.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Worker } from '@temporalio/worker';
import type { TableRef } from '../../model/tables';
import type { VerifyRangeInput } from '../../activities/range-verifier';
import { quoteTable } from '../../db/sql';
import { compareTables } from '../../db/verifier';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { verificationWorkflow } from '../../workflows';
import { prepareWithoutWorkflow } from '../../activities';
import { HELPER_SCHEMA } from '../../db/helper-schema';
import { startRunningWorker } from '../harness/backfill';
import { withMigrationActivities } from '../harness/router';
import { databasePools, installQuietRuntime } from '../harness/servers';
import { workflowsPath } from '../harness/workflow-histories';

installQuietRuntime();

describe('verification', () => {
  const pools = databasePools();
  const suffix = randomUUID().slice(0, 8);
  const table: TableRef = { schema: 'public', table: `verified_${suffix}` };
  const name = quoteTable(table);
  /** The write in flight: changed on old; its sync lands on new while the verifier waits to settle. */
  const inFlightId = '3000';
  let landedInFlight = false;
  let testWorker: Awaited<ReturnType<typeof startRunningWorker>>;

  async function landTheInFlightWrite(input: VerifyRangeInput, keys: string[][]): Promise<void> {
    if (input.table.table !== table.table || !keys.some((key) => key[0] === inFlightId)) return;
    await pools.new.query(`UPDATE ${name} SET note = 'in flight' WHERE id = $1`, [inFlightId]);
    landedInFlight = true;
  }

  const migration = `test-verify-${suffix}`;

  before(async () => {
    testWorker = await startRunningWorker('verification', {
      verifierHooks: { beforeSettle: landTheInFlightWrite },
    });
    for (const pool of [pools.old, pools.new]) {
      await pool.query(sampleTableDdl(table));
      await seedSampleRows(pool, table, 5000);
    }
    // Claimed, guarded and captured as a migration prepares it: writes on old reach the change log.
    await withMigrationActivities(process.env, (activities) =>
      prepareWithoutWorkflow(activities, migration, [table]),
    );
  });

  after(async () => {
    await testWorker.stop();
    await pools.end();
  });

  async function verify(
    id: string,
    options: { chunkSize: number; chunksPerActivity: number; inFlightWaitMs?: number },
  ) {
    const handle = await testWorker.client.workflow.start(verificationWorkflow, {
      taskQueue: testWorker.taskQueue,
      workflowId: `verify-${id}-${suffix}`,
      args: [
        {
          migration,
          table,
          from: 'old',
          to: 'new',
          partitions: 3,
          settleMs: 200,
          ...options,
        },
      ],
    });
    const report = await handle.result();
    await Worker.runReplayHistory(
      { workflowsPath, replayName: `verify-${id}` },
      await handle.fetchHistory(),
      handle.workflowId,
    );
    return report;
  }

  it('finds, reports and repairs planted differences; a write in flight settles and is not reported', async () => {
    await pools.new.query(`DELETE FROM ${name} WHERE id = 100`);
    await pools.new.query(`UPDATE ${name} SET amount = amount + 0.01 WHERE id = 2000`);
    await pools.new.query(
      `INSERT INTO ${name} SELECT id + 10000, customer_id, status, amount, currency, tags, attributes, payload, note, created_at, updated_at FROM ${name} WHERE id IN (1, 2)`,
    );
    // Written on old (so pending in the change log): one lands on new while its chunk settles, one
    // stays pending (no reconciliation runs here), so it is in flight, not a difference.
    await pools.old.query(`UPDATE ${name} SET note = 'in flight' WHERE id = $1`, [inFlightId]);
    await pools.old.query(`UPDATE ${name} SET note = 'still in flight' WHERE id = 4000`);
    // A write capture never saw (a superuser with triggers off): old changed, nothing pending. A
    // difference, not a write in flight, however recent.
    await pools.old.query(
      `BEGIN; SET LOCAL session_replication_role = replica; UPDATE ${name} SET note = 'uncaptured' WHERE id = 2500; COMMIT`,
    );

    const report = await verify('planted', { chunkSize: 500, chunksPerActivity: 4, inFlightWaitMs: 300 });
    assert.equal(landedInFlight, true, 'the in-flight write landed while its chunk settled');
    assert.equal(report.phase, 'done');
    assert.equal(report.rowsFrom, 5000);
    assert.equal(report.rowsTo, 5001, 'one missing and two extra rows on new');
    assert.equal(report.differences, 5, 'missing 100, changed 2000, uncaptured 2500, extra 10001 and 10002');
    assert.equal(report.settled, 1, 'the landed write settled');
    assert.equal(report.inFlight, 1, 'the write whose sync has not come is in flight');
    assert.equal(report.repaired, 5);
    assert.deepEqual(report.sampleKeys.map((key) => key[0]).sort(), [
      '100',
      '10001',
      '10002',
      '2000',
      '2500',
    ]);
    await pools.new.query(`UPDATE ${name} SET note = 'still in flight' WHERE id = 4000`);
    await pools.old.query(`DELETE FROM ${HELPER_SCHEMA}.change_log WHERE migration = $1`, [migration]);
    assert.ok(report.chunks >= 10 && report.mismatchedChunks >= 5 && report.mismatchedChunks <= 7);
    assert.ok((report.rowsPerSecond ?? 0) > 0);
    const comparison = await compareTables(pools.old, pools.new, table, ['id']);
    assert.equal(comparison.differenceCount, 0, JSON.stringify(comparison.differences));
  });

  it('a second run, small chunks across continue-as-new, finds nothing', async () => {
    const report = await verify('clean', { chunkSize: 20, chunksPerActivity: 1 });
    assert.ok(report.runs > 1, `continued as new (${report.runs} runs)`);
    assert.equal(report.rowsFrom, 5000);
    assert.equal(report.rowsTo, 5000);
    assert.equal(report.chunks >= 250, true);
    assert.equal(report.mismatchedChunks, 0);
    assert.equal(report.differences, 0);
    assert.equal(report.repaired, 0);
  });
});
