// What `migrate start` says once it has started a migration: prepared, refused (an OperatorError), or
// still preparing and why (no worker polls the task queue, preparing retries a failure, or a worker
// is at it still).
import type { Client } from '@temporalio/client';
import { MigrationControl } from './migrations';
import { stillPreparingLine, workersPolling } from './workers';

/** Waits for preparing to end (a refusal throws) and returns the line that says how it went. */
export async function preparedLine(client: Client, migration: string, taskQueue: string): Promise<string> {
  // With no worker polling, nothing can prepare it or answer the status query: say so now rather
  // than after the query's wait.
  if ((await workersPolling(client, taskQueue)) === 0)
    return stillPreparingLine(client, migration, taskQueue);
  let phase: string;
  try {
    phase = (await new MigrationControl(client, migration).prepared()).phase;
  } catch (err) {
    // Its status cannot be read while no worker runs it: say that, not the query's failure.
    if ((await workersPolling(client, taskQueue)) !== 0) throw err;
    phase = 'preparing';
  }
  return phase === 'preparing'
    ? stillPreparingLine(client, migration, taskQueue)
    : `prepared: every table checked, change capture on old; follow it with \`migrate status ${migration}\``;
}
