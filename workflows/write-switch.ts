// The write switch: moves write authority from old to new with a pause nobody notices, or gives up
// and leaves everyone on old. In order:
//   1. raise the write fence: every router holds new writes and finishes the ones in flight;
//   2. wait until every live router acknowledges; if one does not in time, lift the fence: abort;
//   3. guard old: it refuses writes from anyone but the migration (writers that bypass the routers
//      are stopped here, so nobody writes old after the switch: hazard 7);
//   4. drain the change log to zero: new now has every write old took;
//   5. move sequences and identity columns on new past old's values (hazard 9);
//   6. capture on new, for the reverse sync to old; capture on old goes (the reverse sync's own
//      writes to old must not be logged and carried back to new);
//   7. the stage `switched`, which lifts the fence: the held writes run on new.
// A failure after step 3 and before 7 undoes it all (guard, capture on new, capture on old back) and
// lifts the fence, so old stays authoritative.
import { log, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { TableRef } from '../activities/inspector';
import type { Stage } from '../router/stage-store';

export interface WriteSwitchInput {
  migration: string;
  tables: TableRef[];
  /** The stage and read percentage the switch starts from (and returns to when it aborts). */
  from: { stage: Stage; readPercent: number };
  /** How long routers get to acknowledge the fence, in ms (default 10,000). */
  fenceTimeoutMs?: number;
  /** A router not heard from for longer is not waited for, in s (default SILENT_AFTER_SECONDS, 15). */
  silentAfterSeconds?: number;
  /** Added to the sequences' highest values on new (default 1000). */
  sequenceMargin?: number;
}

export interface WriteSwitchResult {
  switched: boolean;
  /** Routers that did not acknowledge the fence in time (when the switch aborted for it). */
  missing: string[];
  /** Workflow time from raising the fence to lifting it: the longest any write waited. */
  fencedMs: number;
  changesDrained: number;
  reason?: string;
}

const {
  setMigrationStage,
  installWriteGuard,
  removeWriteGuard,
  advanceSequences,
  installChangeCapture,
  removeChangeCapture,
} = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '200 milliseconds', maximumInterval: '5 seconds', maximumAttempts: 5 },
});
const { awaitRouterFence, drainChangeLog } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '30 seconds',
  retry: { initialInterval: '200 milliseconds', maximumInterval: '5 seconds', maximumAttempts: 5 },
});

export async function writeSwitchWorkflow(input: WriteSwitchInput): Promise<WriteSwitchResult> {
  const fencedAt = Date.now();
  const fence = await setMigrationStage({
    connection: 'old',
    migration: input.migration,
    stage: input.from.stage,
    readPercent: input.from.readPercent,
    fenced: true,
  });
  const liftFence = () =>
    setMigrationStage({
      connection: 'old',
      migration: input.migration,
      stage: input.from.stage,
      readPercent: input.from.readPercent,
    });
  const acks = await awaitRouterFence({
    connection: 'old',
    migration: input.migration,
    version: fence.version,
    timeoutMs: input.fenceTimeoutMs ?? 10_000,
    silentAfterSeconds: input.silentAfterSeconds,
  });
  if (acks.missing.length > 0) {
    await liftFence();
    const reason = `routers did not acknowledge the write fence in time: ${acks.missing.join(', ')}`;
    log.warn(`write switch aborted: ${reason}`);
    return {
      switched: false,
      missing: acks.missing,
      fencedMs: Date.now() - fencedAt,
      changesDrained: 0,
      reason,
    };
  }
  let changesDrained = 0;
  try {
    await installWriteGuard({ connection: 'old', tables: input.tables });
    for (;;) {
      const drained = await drainChangeLog({ from: 'old', to: 'new', batchSize: 1000 });
      changesDrained += drained.entries;
      if (drained.entries === 0 && drained.backlog === 0) break;
    }
    await advanceSequences({ from: 'old', to: 'new', tables: input.tables, margin: input.sequenceMargin });
    await installChangeCapture({ connection: 'new', tables: input.tables });
    await removeChangeCapture({ connection: 'old', tables: input.tables });
    await setMigrationStage({ connection: 'old', migration: input.migration, stage: 'switched' });
  } catch (err) {
    // Old stays authoritative: capture back on old, none on new, old takes writes again, and the
    // held writes go there.
    await installChangeCapture({ connection: 'old', tables: input.tables });
    await removeChangeCapture({ connection: 'new', tables: input.tables, discardPending: true });
    await removeWriteGuard({ connection: 'old', tables: input.tables });
    await liftFence();
    const reason = `the switch failed and was undone: ${(err as Error).message}`;
    log.warn(reason);
    return { switched: false, missing: [], fencedMs: Date.now() - fencedAt, changesDrained, reason };
  }
  return { switched: true, missing: [], fencedMs: Date.now() - fencedAt, changesDrained };
}
