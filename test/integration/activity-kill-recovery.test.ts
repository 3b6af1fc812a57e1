// A worker killed in the middle of any activity costs seconds, not its start-to-close timeout (issue
// 13, item 7). Verification planning (start-to-close 10 minutes, no heartbeat before) and a
// verification range (heartbeat timeout 2 minutes, silent while a statement runs) are each caught
// mid-statement (blocked on a lock the test holds), the worker is SIGKILLed and another started: the
// activity is retried after a heartbeat timeout (its next attempt says so) and the verification ends.
// A sync batch of reconciliation likewise, caught writing new: every change is carried over.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import type { TableRef } from '../../model/tables';
import { quoteTable } from '../../db/sql';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import type { WorkflowHandle } from '@temporalio/client';
import { compareTables } from '../../db/verifier';
import { reconciliationWorkflow, verificationWorkflow } from '../../workflows';
import { drainAndStopSignal } from '../../workflows/messages';
import { prepareWithoutWorkflow } from '../../activities';
import { withMigrationActivities } from '../harness/router';
import { databasePools, servers, temporalClient } from '../harness/servers';
import { waitFor } from '../harness/wait';
import { startWorkerProcess, type WorkerProcess } from '../harness/worker-process';

describe('recovery from a worker killed mid-activity', () => {
  const pools = databasePools();
  const workers: WorkerProcess[] = [];
  const lockers: pg.Client[] = [];

  after(async () => {
    await Promise.all(workers.map((worker) => worker.kill('SIGKILL')));
    for (const locker of lockers) await locker.end().catch(() => undefined);
    await pools.end();
  });

  /** A session holding an exclusive lock on `table` until it rolls back. */
  async function lockTable(url: string, table: TableRef): Promise<pg.Client> {
    const locker = new pg.Client({ connectionString: url });
    lockers.push(locker);
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query(`LOCK TABLE ${quoteTable(table)} IN ACCESS EXCLUSIVE MODE`);
    return locker;
  }

  /** Waits until one of the migration's sessions on `pool` waits for a lock (the activity is mid-statement). */
  async function activityBlocked(pool: pg.Pool, side: string): Promise<void> {
    await waitFor(`an activity blocked on ${side}`, async () => {
      const { rows } = await pool.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM pg_stat_activity
          WHERE application_name = $1 AND wait_event_type = 'Lock'`,
        [`pg-live-migrate ${side}`],
      );
      return (rows[0]?.n ?? 0) > 0;
    });
  }

  /**
   * A sample table of `rows` rows on both sides, prepared for a migration of its own (capture on old),
   * and a way to start worker processes on a task queue of its own.
   */
  async function preparedTable(kind: string, rows: number) {
    const suffix = randomUUID().slice(0, 8);
    const table: TableRef = { schema: 'public', table: `killed_${kind}_${suffix}` };
    const migration = `test-kill-${kind}-${suffix}`;
    for (const pool of [pools.old, pools.new]) {
      await pool.query(sampleTableDdl(table));
      await seedSampleRows(pool, table, rows);
    }
    await withMigrationActivities(process.env, (activities) =>
      prepareWithoutWorkflow(activities, migration, [table]),
    );
    const taskQueue = `test-kill-${kind}-${suffix}`;
    const startWorker = () => {
      const worker = startWorkerProcess(taskQueue);
      workers.push(worker);
      return worker;
    };
    return { suffix, table, migration, taskQueue, startWorker };
  }

  /** Every activity attempt after the first in a workflow's history, with the failure before it. */
  async function retriedActivities(handle: { fetchHistory(): ReturnType<WorkflowHandle['fetchHistory']> }) {
    const history = await handle.fetchHistory();
    const scheduled = new Map<string, string>();
    const retried: Array<{ activity: string; attempt: number; lastFailure: string }> = [];
    for (const event of history.events ?? []) {
      const id = String(event.eventId);
      const type = event.activityTaskScheduledEventAttributes?.activityType?.name;
      if (type) scheduled.set(id, type);
      const started = event.activityTaskStartedEventAttributes;
      if (started && (started.attempt ?? 1) > 1) {
        retried.push({
          activity: scheduled.get(String(started.scheduledEventId)) ?? '?',
          attempt: started.attempt ?? 1,
          lastFailure: started.lastFailure?.message ?? '',
        });
      }
    }
    return retried;
  }

  it('verification planning and a verification range: retried after a heartbeat timeout', async () => {
    const { suffix, table, migration, taskQueue, startWorker } = await preparedTable('verify', 3000);
    const oldLock = await lockTable(servers.oldUrl, table);
    const newLock = await lockTable(servers.newUrl, table);
    const client = await temporalClient();
    try {
      let worker = startWorker();
      const handle = await client.workflow.start(verificationWorkflow, {
        taskQueue,
        workflowId: `verify-killed-${suffix}`,
        args: [{ migration, table, from: 'old', to: 'new', partitions: 2, chunkSize: 1000, settleMs: 100 }],
      });
      // Planning reads old: caught there, the worker dies, another takes over once old is free.
      await activityBlocked(pools.old, 'old');
      await worker.kill('SIGKILL');
      worker = startWorker();
      await oldLock.query('ROLLBACK');
      // A range reads both sides: caught on new, the worker dies again.
      await activityBlocked(pools.new, 'new');
      await worker.kill('SIGKILL');
      startWorker();
      await newLock.query('ROLLBACK');

      // Before issue 13 the plan waited out its 10-minute start-to-close timeout: a hang, caught here.
      const report = await waitFor(
        'the verification to end',
        async () => {
          const description = await handle.describe();
          return description.status.name === 'COMPLETED' ? await handle.result() : undefined;
        },
        (result) => result !== undefined,
      );
      assert.equal(report!.differences, 0);
      assert.equal(report!.rowsFrom, 3000);

      const retried = await retriedActivities(handle);
      for (const activity of ['planPartitions', 'verifyRange']) {
        const retry = retried.find((r) => r.activity === activity);
        assert.ok(retry !== undefined, `${activity} was retried: ${JSON.stringify(retried)}`);
        assert.match(retry.lastFailure, /heartbeat/i, `${activity} retried after a heartbeat timeout`);
      }
    } finally {
      await client.connection.close();
    }
  });

  it('a sync batch: retried after a heartbeat timeout, every change carried over', async () => {
    const { suffix, table, migration, taskQueue, startWorker } = await preparedTable('sync', 1000);
    await pools.old.query(`UPDATE ${quoteTable(table)} SET note = 'changed on old' WHERE id % 10 = 0`);
    const newLock = await lockTable(servers.newUrl, table);
    const client = await temporalClient();
    try {
      const worker = startWorker();
      const handle = await client.workflow.start(reconciliationWorkflow, {
        taskQueue,
        workflowId: `sync-killed-${suffix}`,
        args: [{ migration, from: 'old', to: 'new', batchSize: 50, idlePollMs: 100 }],
      });
      // The batch writes new: caught there, the worker dies, another takes over once new is free.
      await activityBlocked(pools.new, 'new');
      await worker.kill('SIGKILL');
      startWorker();
      await newLock.query('ROLLBACK');
      await handle.signal(drainAndStopSignal);
      await waitFor(
        'the reconciliation to drain and stop',
        async () => (await handle.describe()).status.name,
        (status) => status !== 'RUNNING',
      );
      await handle.result();
      const comparison = await compareTables(pools.old, pools.new, table, ['id']);
      assert.deepEqual(comparison.differences, [], 'every change carried over');
      const retried = await retriedActivities(handle);
      const retry = retried.find((r) => r.activity === 'drainChangeLog');
      assert.ok(retry !== undefined, `drainChangeLog was retried: ${JSON.stringify(retried)}`);
      assert.match(retry.lastFailure, /heartbeat/i, 'retried after a heartbeat timeout');
    } finally {
      await client.connection.close();
    }
  });
});
