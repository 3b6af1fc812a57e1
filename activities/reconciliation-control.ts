// Reconciliation control, for the migration and the write switch: start the migration's
// reconciliation workflow in a given direction (or find it running), stop it,
// and read its backlog for the ramp's gates. Through the worker's own Temporal client, so the
// migration may continue as new while reconciliation keeps running, and a retry is harmless.
import { ApplicationFailure, Context } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';
import type { ConnectionName } from '../model/connections';
import type { ServerBinding } from '../model/servers';
import { MESSAGE, type ReconciliationStatus } from '../model/messages';

const WORKFLOW_TYPE = 'reconciliationWorkflow';

export interface Direction {
  from: ConnectionName;
  to: ConnectionName;
}

function isRunning(status: string): boolean {
  return status === 'RUNNING';
}

export function createReconciliationControl() {
  const client = () => Context.current().client;

  const describe = async (workflowId: string) => {
    try {
      return await client().workflow.getHandle(workflowId).describe();
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return undefined;
      throw err;
    }
  };

  return {
    /**
     * Starts reconciliation `workflowId` syncing `from` → `to`, unless it already runs that way.
     * Refuses (for good) when it runs the other way: stop it first.
     */
    ensureReconciliation: async (
      input: { workflowId: string; migration: string; servers: ServerBinding } & Direction,
    ): Promise<void> => {
      const running = await describe(input.workflowId);
      if (running !== undefined && isRunning(running.status.name)) {
        const memo = (running.memo ?? {}) as Partial<Direction>;
        if (memo.from === input.from && memo.to === input.to) return;
        throw ApplicationFailure.nonRetryable(
          `reconciliation ${input.workflowId} runs from ${String(memo.from)} to ${String(memo.to)}, not from ${input.from} to ${input.to}; stop it first`,
          'ReconciliationDirection',
        );
      }
      await client().workflow.start(WORKFLOW_TYPE, {
        workflowId: input.workflowId,
        taskQueue: Context.current().info.taskQueue,
        args: [{ migration: input.migration, servers: input.servers, from: input.from, to: input.to }],
        memo: { from: input.from, to: input.to },
        workflowIdConflictPolicy: 'USE_EXISTING',
      });
    },

    /**
     * Asks reconciliation to finish after the batch in hand, and waits until it has. What is left in
     * the change log is the caller's: the write switch drains it, retire and abort discard it.
     */
    stopReconciliation: async (input: { workflowId: string }): Promise<ReconciliationStatus | null> => {
      const running = await describe(input.workflowId);
      if (running === undefined || !isRunning(running.status.name)) return null;
      const handle = client().workflow.getHandle(input.workflowId);
      await handle.signal(MESSAGE.stop);
      const context = Context.current();
      const beat = setInterval(() => context.heartbeat(), 1000);
      try {
        return (await Promise.race([handle.result(), context.cancelled])) as ReconciliationStatus;
      } finally {
        clearInterval(beat);
      }
    },

    /** The backlog of the running reconciliation, or null when none runs. */
    reconciliationStatus: async (input: { workflowId: string }): Promise<ReconciliationStatus | null> => {
      const running = await describe(input.workflowId);
      if (running === undefined || !isRunning(running.status.name)) return null;
      return client()
        .workflow.getHandle(input.workflowId)
        .query<ReconciliationStatus>(MESSAGE.reconciliationStatus);
    },
  };
}
