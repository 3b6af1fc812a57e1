// Runs one activity function outside a worker, in Temporal's mock activity context (heartbeats and
// cancellation work), against whatever real databases its pools point at.
import { MockActivityEnvironment } from '@temporalio/testing';
import type { Activities } from '../../activities';
import type { ConnectionName } from '../../model/connections';
import type { ServerBinding } from '../../model/servers';

export function runActivity<A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> {
  return new MockActivityEnvironment().run<A, R, typeof fn>(fn, ...args);
}

/** Drains the migration's change log from `from` to `to` until it is empty. */
export async function drainUntilEmpty(
  activities: Pick<Activities, 'drainChangeLog'>,
  scope: { migration: string; servers: ServerBinding; from: ConnectionName; to: ConnectionName },
): Promise<void> {
  for (;;) {
    const drained = await runActivity(activities.drainChangeLog, { ...scope, batchSize: 1000 });
    if (drained.entries === 0 && drained.backlog === 0) return;
  }
}
