// Runs the backfill workflow for one table on the test run's Temporal server, with a worker of its
// own (on a fresh task queue) for exactly as long as the workflow runs.
import { randomUUID } from 'node:crypto';
import type { Client, WorkflowHandle } from '@temporalio/client';
import type { ActivityHooks } from '../../activities';
import type { CopierHooks } from '../../activities/copier';
import type { TableRef } from '../../model/tables';
import { createMigrationWorker, type MigrationWorker } from '../../worker/create-worker';
import { backfillTableWorkflow } from '../../workflows';
import type { BackfillTableInput } from '../../workflows/backfill';
import { backfillProgressQuery } from '../../workflows/messages';
import { temporalClient, testSite } from './servers';

export type BackfillOptions = Partial<
  Omit<BackfillTableInput, 'migration' | 'source' | 'target' | 'table' | 'chunkSize'>
> & { migration?: string };

export function backfillInput(
  table: TableRef,
  chunkSize: number,
  options: BackfillOptions = {},
): BackfillTableInput {
  return { migration: 'test', source: 'old', target: 'new', table, chunkSize, ...options };
}

/** A worker on a fresh task queue plus a client, for tests that drive workflows themselves. */
export async function startTestWorker(
  prefix: string,
  hooks: ActivityHooks = {},
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ worker: MigrationWorker; client: Client; taskQueue: string; close: () => Promise<void> }> {
  const taskQueue = `test-${prefix}-${randomUUID()}`;
  const worker = await createMigrationWorker(testSite(taskQueue), env, hooks);
  const client = await temporalClient();
  return {
    worker,
    client,
    taskQueue,
    close: async () => {
      await client.connection.close();
    },
  };
}

/**
 * A test worker that runs in the background until `stop()`, for a whole test file; `env` may point
 * its old and new connections elsewhere than the test run's databases.
 */
export async function startRunningWorker(prefix: string, hooks?: ActivityHooks, env?: NodeJS.ProcessEnv) {
  const testWorker = await startTestWorker(prefix, hooks, env);
  let release!: () => void;
  const running = testWorker.worker.runUntil(new Promise<void>((resolve) => (release = resolve)));
  return {
    client: testWorker.client,
    taskQueue: testWorker.taskQueue,
    stop: async () => {
      release();
      await running;
      await testWorker.close();
    },
  };
}

/** The histories of a finished backfill: the table workflow's and each partition's latest run. */
export async function backfillHistories(
  client: Client,
  handle: WorkflowHandle<typeof backfillTableWorkflow>,
) {
  const progress = await handle.query(backfillProgressQuery);
  const ids = [handle.workflowId, ...progress.partitions.map((p) => p.workflowId)];
  return Promise.all(
    ids.map(async (workflowId) => ({
      workflowId,
      history: await client.workflow.getHandle(workflowId).fetchHistory(),
    })),
  );
}

export async function runBackfill(
  table: TableRef,
  chunkSize: number,
  options: BackfillOptions & { copierHooks?: CopierHooks } = {},
) {
  const { copierHooks, ...workflowOptions } = options;
  const { worker, client, taskQueue, close } = await startTestWorker('backfill', { copierHooks });
  try {
    return await worker.runUntil(
      (async () => {
        const handle = await client.workflow.start(backfillTableWorkflow, {
          taskQueue,
          workflowId: `backfill-${table.table}-${randomUUID().slice(0, 8)}`,
          args: [backfillInput(table, chunkSize, workflowOptions)],
        });
        const result = await handle.result();
        const progress = await handle.query(backfillProgressQuery);
        const histories = await backfillHistories(client, handle);
        return { result, progress, histories, workflowId: handle.workflowId };
      })(),
    );
  } finally {
    await close();
  }
}

/** The message of the refusal that failed a workflow (WorkflowFailedError → ActivityFailure → ApplicationFailure). */
export function refusalMessage(err: unknown): string {
  let cause: unknown = err;
  while (cause instanceof Error && cause.cause instanceof Error) cause = cause.cause;
  return cause instanceof Error ? cause.message : String(err);
}
