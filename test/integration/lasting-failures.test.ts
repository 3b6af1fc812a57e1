// Failures that retrying cannot heal end at once with the cause and the fix (issue 13, item 1), where
// they were retried for ever out of sight: a worker whose password new rejects, and a foreign key on
// new whose parent is not migrated (with the table and the chunk's key range). Run on its own, the
// backfill fails with the cause; in a migration the same failure holds it (see migration.ts).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { backfillTableWorkflow } from '../../workflows';
import { backfillInput, refusalMessage, startRunningWorker } from '../harness/backfill';
import { databasePools, installQuietRuntime, servers } from '../harness/servers';
import { waitFor } from '../harness/wait';

installQuietRuntime();

describe('failures retrying cannot heal', () => {
  const pools = databasePools();
  const stops: Array<() => Promise<void>> = [];
  after(async () => {
    for (const stop of stops) await stop();
    await pools.end();
  });

  /** Runs a backfill on its own and returns how it failed (bounded: a retry for ever fails the test). */
  async function failure(worker: Awaited<ReturnType<typeof startRunningWorker>>, table: string) {
    const handle = await worker.client.workflow.start(backfillTableWorkflow, {
      taskQueue: worker.taskQueue,
      workflowId: `lasting-${table}`,
      args: [backfillInput({ schema: 'public', table }, 100, { migration: `test-${table}`, partitions: 2 })],
    });
    const description = await waitFor(
      `the backfill of ${table} to end`,
      () => handle.describe(),
      (d) => d.status.name !== 'RUNNING',
    );
    assert.equal(description.status.name, 'FAILED');
    const err = await handle.result().then(
      () => assert.fail('it succeeded'),
      (caught: unknown) => caught,
    );
    assert.ok(err instanceof WorkflowFailedError);
    let cause: unknown = err;
    while (cause instanceof Error && cause.cause instanceof Error) cause = cause.cause;
    return { message: refusalMessage(err), type: (cause as { type?: string }).type };
  }

  it('a password new rejects: AuthenticationFailed with the fix, no retry, no password', async () => {
    const wrong = new URL(servers.newUrl);
    wrong.password = 'NotThePassword815';
    const worker = await startRunningWorker(
      'lasting-auth',
      {},
      { ...process.env, NEW_DATABASE_URL: wrong.toString() },
    );
    stops.push(worker.stop);
    const table = `auth_${randomUUID().slice(0, 8)}`;
    for (const pool of [pools.old, pools.new]) await pool.query(`CREATE TABLE ${table} (id int PRIMARY KEY)`);
    const { message, type } = await failure(worker, table);
    assert.equal(type, 'AuthenticationFailed');
    assert.match(message, /SQLSTATE 28P01/);
    assert.match(message, /fix the worker's connection settings/);
    assert.doesNotMatch(message, /NotThePassword815/);
  });

  it('a foreign key on new whose parent is not migrated: the table, the key range and the fix', async () => {
    const worker = await startRunningWorker('lasting-fk');
    stops.push(worker.stop);
    const suffix = randomUUID().slice(0, 8);
    const parent = `parent_${suffix}`;
    const child = `child_${suffix}`;
    for (const pool of [pools.old, pools.new]) {
      await pool.query(`CREATE TABLE ${parent} (id int PRIMARY KEY)`);
      await pool.query(
        `CREATE TABLE ${child} (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES ${parent})`,
      );
    }
    await pools.old.query(`INSERT INTO ${parent} SELECT g FROM generate_series(1, 10) g`);
    await pools.old.query(`INSERT INTO ${child} SELECT g, 1 + g % 10 FROM generate_series(1, 500) g`);
    const { message, type } = await failure(worker, child);
    assert.equal(type, 'SyncFailed');
    assert.match(message, new RegExp(`syncing "public"."${child}" into new in keys \\(`));
    assert.match(message, /SQLSTATE 23503/);
    assert.match(message, /migrate that table too/);
  });
});
