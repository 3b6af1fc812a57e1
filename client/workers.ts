// Whether any worker polls a task queue, from Temporal's own record of its pollers, so a command that
// waited for a worker can say what actually happened: no worker polls the queue, or one does and the
// work is slow or retrying.
import type { Client } from '@temporalio/client';
import { retryingActivities } from './retrying';

/** A worker long-polls for up to a minute; one not seen for longer than this has gone. */
const POLLER_GONE_MS = 90_000;

/** temporal.api.enums.v1 TaskQueueKind.NORMAL and TaskQueueType.WORKFLOW. */
const TASK_QUEUE_KIND_NORMAL = 1;
const TASK_QUEUE_TYPE_WORKFLOW = 1;

/** How to start a worker, in the operator's words. */
export function startWorkerHint(taskQueue: string): string {
  return `start one with \`node dist/worker/main.js --config FILE\` (its Temporal settings and task queue ${taskQueue})`;
}

/** The workers that polled `taskQueue` for workflow tasks lately; undefined when Temporal does not say. */
export async function workersPolling(client: Client, taskQueue: string): Promise<number | undefined> {
  try {
    const described = await client.workflowService.describeTaskQueue({
      namespace: client.options.namespace,
      taskQueue: { name: taskQueue, kind: TASK_QUEUE_KIND_NORMAL },
      taskQueueType: TASK_QUEUE_TYPE_WORKFLOW,
    });
    const now = Date.now();
    return (described.pollers ?? []).filter((poller) => {
      const seconds = Number(poller.lastAccessTime?.seconds ?? 0);
      return now - seconds * 1000 < POLLER_GONE_MS;
    }).length;
  } catch {
    return undefined;
  }
}

/**
 * Why the workflow `workflowId` does not answer a query: no worker polls its task queue (with how to
 * start one); undefined when a worker does poll it or Temporal does not say.
 */
export async function noWorkerReason(client: Client, workflowId: string): Promise<string | undefined> {
  let taskQueue: string;
  try {
    taskQueue = (await client.workflow.getHandle(workflowId).describe()).taskQueue;
  } catch {
    return undefined;
  }
  const polling = await workersPolling(client, taskQueue);
  if (polling !== 0) return undefined;
  return `no worker polls task queue ${taskQueue}, so nothing runs the migration (workflow ${workflowId}) or answers for it: ${startWorkerHint(taskQueue)}`;
}

/**
 * What `migrate start` says when preparing has not ended in the time it waited: no worker polls the
 * task queue, or preparing retries a failure (with the last error), or a worker is at it still.
 */
export async function stillPreparingLine(
  client: Client,
  migration: string,
  taskQueue: string,
): Promise<string> {
  const follow = `follow it with \`migrate status ${migration}\``;
  const polling = await workersPolling(client, taskQueue);
  if (polling === 0)
    return `still preparing: no worker polls task queue ${taskQueue}; ${startWorkerHint(taskQueue)}, then ${follow}`;
  const retrying = (await retryingActivities(client, migration))[0];
  if (retrying !== undefined) {
    return `still preparing: ${retrying.activity} is retrying (attempt ${retrying.attempt}), last error: ${retrying.lastError}; ${follow}`;
  }
  return `still preparing (${polling === undefined ? 'a worker' : `${polling} worker${polling === 1 ? '' : 's'}`} on task queue ${taskQueue} at it); ${follow}`;
}
