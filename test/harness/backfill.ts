// Runs the backfill workflow for one table on the test run's Temporal server, with a worker of its
// own (on a fresh task queue) for exactly as long as the workflow runs.
import { randomUUID } from 'node:crypto';
import type { TableRef } from '../../activities/inspector';
import { createMigrationWorker } from '../../worker/create-worker';
import { backfillTableWorkflow } from '../../workflows';
import { backfillProgressQuery } from '../../workflows/messages';
import { temporalClient, testSite } from './servers';

export async function runBackfill(
  table: TableRef,
  chunkSize: number,
  options: { createTargetTable?: boolean } = {},
) {
  const taskQueue = `test-backfill-${randomUUID()}`;
  const worker = await createMigrationWorker(testSite(taskQueue), process.env);
  const client = await temporalClient();
  try {
    return await worker.runUntil(
      (async () => {
        const handle = await client.workflow.start(backfillTableWorkflow, {
          taskQueue,
          workflowId: `backfill-${table.table}-${randomUUID().slice(0, 8)}`,
          args: [{ migration: 'test', source: 'old', target: 'new', table, chunkSize, ...options }],
        });
        const result = await handle.result();
        const progress = await handle.query(backfillProgressQuery);
        const history = await handle.fetchHistory();
        return { result, progress, history, workflowId: handle.workflowId };
      })(),
    );
  } finally {
    await client.connection.close();
  }
}

/** The message of the refusal that failed a workflow (WorkflowFailedError → ActivityFailure → ApplicationFailure). */
export function refusalMessage(err: unknown): string {
  let cause: unknown = err;
  while (cause instanceof Error && cause.cause instanceof Error) cause = cause.cause;
  return cause instanceof Error ? cause.message : String(err);
}
