// What is retrying right now: the pending activities of a migration's workflows (the migration, its
// backfills and their partitions, reconciliation, verification) that have failed at least once and
// are being tried again, with since when, how many attempts and the last error. A failure that can
// heal (a lost connection, a server restarting) retries for as long as it takes; `migrate status`
// shows it here rather than leaving it out of sight.
import type { Client } from '@temporalio/client';
import { redactSecrets } from '../model/redact';
import { migrationWorkflowId } from '../model/ids';
import { MIGRATION_NAME } from '../workflows/search-attributes';

export interface RetryingActivity {
  workflowId: string;
  activity: string;
  /** The attempt running or due next (2 or more: it has failed before). */
  attempt: number;
  /** When the first attempt was scheduled, as far as the workflow's history tells (ms). */
  since: number | null;
  lastError: string;
  /** When the next attempt is due, when it waits between attempts (ms). */
  nextAttemptAt: number | null;
}

function millis(time: { seconds?: unknown; nanos?: number | null } | null | undefined): number | null {
  if (time === null || time === undefined || time.seconds === undefined || time.seconds === null) return null;
  return Number(time.seconds) * 1000 + Math.floor((time.nanos ?? 0) / 1e6);
}

/** The running workflows of a migration: the migration itself and those tagged with its name. */
async function migrationWorkflowIds(client: Client, migration: string): Promise<string[]> {
  const ids = new Set([migrationWorkflowId(migration)]);
  try {
    const query = `${MIGRATION_NAME.name} = '${migration.replace(/'/g, "''")}' AND ExecutionStatus = 'Running'`;
    for await (const workflow of client.workflow.list({ query })) ids.add(workflow.workflowId);
  } catch {
    // A cluster without the search attribute: the migration's own activities only.
  }
  return [...ids];
}

/** When the activity `activityId` was first scheduled, from the workflow's history. */
async function firstScheduled(
  client: Client,
  workflowId: string,
  activityId: string,
): Promise<number | null> {
  try {
    const history = await client.workflow.getHandle(workflowId).fetchHistory();
    for (const event of history.events ?? []) {
      if (event.activityTaskScheduledEventAttributes?.activityId === activityId)
        return millis(event.eventTime);
    }
  } catch {
    // Ended or gone meanwhile.
  }
  return null;
}

/** Every activity of the migration that failed and is being retried. */
export async function retryingActivities(client: Client, migration: string): Promise<RetryingActivity[]> {
  const found: RetryingActivity[] = [];
  for (const workflowId of await migrationWorkflowIds(client, migration)) {
    let pending;
    try {
      pending = (await client.workflow.getHandle(workflowId).describe()).raw.pendingActivities ?? [];
    } catch {
      continue;
    }
    for (const activity of pending) {
      const attempt = activity.attempt ?? 1;
      if (attempt < 2) continue;
      found.push({
        workflowId,
        activity: activity.activityType?.name ?? 'activity',
        attempt,
        since: await firstScheduled(client, workflowId, activity.activityId ?? ''),
        lastError: redactSecrets(
          activity.lastFailure?.message ?? 'no error recorded (the worker running it went away)',
        ),
        nextAttemptAt: millis(activity.nextAttemptScheduleTime),
      });
    }
  }
  return found;
}

/** `migrate status` lines for the activities retrying. */
export function formatRetrying(retrying: RetryingActivity[]): string[] {
  return retrying.map((entry) => {
    const since = entry.since === null ? '' : ` since ${new Date(entry.since).toISOString()}`;
    const next =
      entry.nextAttemptAt === null ? '' : `, next try at ${new Date(entry.nextAttemptAt).toISOString()}`;
    return `  retrying: ${entry.activity} in ${entry.workflowId}${since}, attempt ${entry.attempt}${next}; last error: ${entry.lastError}`;
  });
}
