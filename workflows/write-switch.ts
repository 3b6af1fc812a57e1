// The write switch: moves write authority from one side to the other with a pause nobody notices,
// or gives up and leaves everyone where they were. The migration runs it forward (old → new, into
// `switched`) and backward (new → old, a rollback from `switched` or `complete`: hazard 8). In order:
//   1. stop the reconciliation that syncs toward the receiving side after its batch in hand (after
//      the flip it would carry stale rows over newer ones); what it leaves behind, step 5 drains. A
//      reconciliation that cannot carry a table's changes stops the switch here: nothing moves;
//   2. raise the write fence: every router holds new writes and finishes the ones in flight;
//   3. wait until every live router acknowledges; if one does not in time, lift the fence and start
//      reconciliation again: abort;
//   then, in one activity (activities/authority-switch.ts), so the held writes wait for database
//   work only:
//   4. guard the side giving up authority: it refuses writes from every role but the migration's
//      (writers that bypass the routers are stopped here, so nobody writes it after the switch:
//      hazard 7);
//   5. drain its change log to zero: the other side now has every write it took;
//   6. move sequences and identity columns on the receiving side past the giving side's values
//      (hazard 9);
//   7. capture on the receiving side, for the sync the other way; capture on the giving side goes
//      (the reverse sync's own writes there must not be logged and carried back); the receiving
//      side's guard, left from an earlier switch, goes; going back to old, new's guard goes too (the
//      routers write new themselves again, as their mirror);
//   8. the target stage, which lifts the fence: the held writes run on the receiving side;
//   and last:
//   9. reconciliation starts again in the new direction.
// A failure in 4–8 undoes it all (old guarded again when new keeps authority) and lifts the fence,
// so authority stays put.
import { log, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { TableRef } from '../model/tables';
import type { ServerBinding } from '../model/servers';
import type { ConnectionName } from '../model/connections';
import type { StagePosition } from '../model/migration-plan';
import type { WriteSwitchResult } from '../model/messages';

export interface AuthoritySwitchInput {
  migration: string;
  servers: ServerBinding;
  tables: TableRef[];
  /** The side giving up authority, and the stage the switch starts from (and returns to on abort). */
  from: { side: ConnectionName } & StagePosition;
  /** The side taking authority, and the stage that lifts the fence. */
  to: { side: ConnectionName } & StagePosition;
  /** The migration's reconciliation workflow, stopped before the flip and started after it. */
  reconciliationWorkflowId?: string;
  /** How long routers get to acknowledge the fence, in ms (default 10,000). */
  fenceTimeoutMs?: number;
  /** A router not heard from for longer is not waited for, in s (default SILENT_AFTER_SECONDS, 15). */
  silentAfterSeconds?: number;
  /** Added to the sequences' highest values on the receiving side (default 1000). */
  sequenceMargin?: number;
}

export interface WriteSwitchInput {
  migration: string;
  servers: ServerBinding;
  tables: TableRef[];
  /** The stage and read percentage the switch starts from (and returns to when it aborts). */
  from: StagePosition;
  reconciliationWorkflowId?: string;
  fenceTimeoutMs?: number;
  silentAfterSeconds?: number;
  sequenceMargin?: number;
}

const {
  setMigrationStage,
  removeWriteGuard,
  installWriteGuard,
  installChangeCapture,
  removeChangeCapture,
  ensureReconciliation,
} = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  heartbeatTimeout: '15 seconds',
  retry: { initialInterval: '200 milliseconds', maximumInterval: '5 seconds', maximumAttempts: 5 },
});
const { awaitRouterFence, moveWriteAuthority, stopReconciliation } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '15 seconds',
  retry: { initialInterval: '200 milliseconds', maximumInterval: '5 seconds', maximumAttempts: 5 },
});

/** Where the fence goes up, and how long routers get to acknowledge it. */
export interface WriteFenceInput {
  migration: string;
  servers: ServerBinding;
  /** The stage the fence goes up on. */
  at: StagePosition;
  /** In ms (default 10,000). */
  timeoutMs?: number;
  /** A router not heard from for longer is not waited for, in s (default SILENT_AFTER_SECONDS, 15). */
  silentAfterSeconds?: number;
}

/**
 * Raises the write fence on `at` and waits until every live router acknowledged it: none has a
 * write, or a mirror that trails one, in flight. The routers that did not in time; the next stage
 * set lifts the fence, whether the caller goes on or goes back to `at`.
 */
export async function raiseWriteFence(input: WriteFenceInput): Promise<string[]> {
  const { migration, servers, at } = input;
  const fence = await setMigrationStage({
    servers,
    connection: 'old',
    migration,
    stage: at.stage,
    readPercent: at.readPercent,
    fenced: true,
  });
  const acks = await awaitRouterFence({
    servers,
    connection: 'old',
    migration,
    version: fence.version,
    timeoutMs: input.timeoutMs ?? 10_000,
    silentAfterSeconds: input.silentAfterSeconds,
  });
  return acks.missing;
}

/** Moves write authority from `input.from.side` to `input.to.side`; see the steps above. */
export async function switchAuthority(input: AuthoritySwitchInput): Promise<WriteSwitchResult> {
  const { from, to, migration, tables, servers } = input;
  const setStage = (position: StagePosition) =>
    setMigrationStage({
      servers,
      connection: 'old',
      migration,
      stage: position.stage,
      readPercent: position.readPercent,
    });
  const reconcile = async (source: ConnectionName, target: ConnectionName) => {
    if (input.reconciliationWorkflowId === undefined) return;
    await ensureReconciliation({
      workflowId: input.reconciliationWorkflowId,
      migration,
      servers,
      from: source,
      to: target,
    });
  };

  if (input.reconciliationWorkflowId !== undefined) {
    const stopped = await stopReconciliation({ workflowId: input.reconciliationWorkflowId });
    // A table whose changes keep failing would be left behind by the flip: do not switch.
    if (stopped !== null && stopped.failing.length > 0) {
      await reconcile(from.side, to.side);
      const reason = `reconciliation cannot carry every change over: ${stopped.failing.map((f) => `${f.table}: ${f.message}`).join('; ')}`;
      log.warn(`write switch not started: ${reason}`);
      return { switched: false, missing: [], fencedMs: 0, changesDrained: 0, reason };
    }
  }
  const fencedAt = Date.now();
  const missing = await raiseWriteFence({
    migration,
    servers,
    at: from,
    timeoutMs: input.fenceTimeoutMs,
    silentAfterSeconds: input.silentAfterSeconds,
  });
  if (missing.length > 0) {
    await setStage(from);
    const fencedMs = Date.now() - fencedAt;
    await reconcile(from.side, to.side);
    const reason = `routers did not acknowledge the write fence in time: ${missing.join(', ')}`;
    log.warn(`write switch aborted: ${reason}`);
    return { switched: false, missing, fencedMs, changesDrained: 0, reason };
  }
  const acknowledgedMs = Date.now() - fencedAt;
  try {
    const moved = await moveWriteAuthority({
      migration,
      servers,
      tables,
      from: from.side,
      to: to.side,
      stage: to.stage,
      readPercent: to.readPercent,
      sequenceMargin: input.sequenceMargin,
    });
    const fencedMs = Date.now() - fencedAt;
    await reconcile(to.side, from.side);
    return {
      switched: true,
      missing: [],
      fencedMs,
      changesDrained: moved.changesDrained,
      stepsMs: { acknowledged: acknowledgedMs, ...moved.stepsMs },
    };
  } catch (err) {
    // Authority stays where it was: capture back on the giving side, none on the receiving side, the
    // giving side takes writes again, and the held writes go there.
    const scope = { migration, servers, tables };
    await installChangeCapture({ ...scope, connection: from.side });
    await removeChangeCapture({ ...scope, connection: to.side, discardPending: true });
    await removeWriteGuard({ ...scope, connection: from.side });
    // New keeps authority: old must refuse writes again (the switch may have lifted its guard).
    if (from.side === 'new') await installWriteGuard({ ...scope, connection: 'old' });
    await setStage(from);
    const fencedMs = Date.now() - fencedAt;
    await reconcile(from.side, to.side);
    const reason = `the switch failed and was undone: ${(err as Error).message}`;
    log.warn(reason);
    return { switched: false, missing: [], fencedMs, changesDrained: 0, reason };
  }
}

/** The forward switch on its own: old → new, into `switched`. */
export async function writeSwitchWorkflow(input: WriteSwitchInput): Promise<WriteSwitchResult> {
  return switchAuthority({
    ...input,
    from: { side: 'old', ...input.from },
    to: { side: 'new', stage: 'switched', readPercent: 100 },
  });
}
