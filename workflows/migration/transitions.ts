// Moving the migration between steps: setting the stage routers follow, letting trailing mirrors
// land before reads go to new, and moving write authority through the write switch
// (write-switch.ts) when a move crosses `switched`, either way.
import type { StagePosition } from '../../model/migration-plan';
import type { WriteSwitchResult } from '../../model/messages';
import { raiseWriteFence, switchAuthority } from '../write-switch';
import { setMigrationStage } from './activities';
import type { MigrationState } from './state';

/** Sets the stage in old's stage store (every router follows it); `fenced` raises or lowers the write fence. */
export async function setStage(state: MigrationState, step: StagePosition, fenced?: boolean): Promise<void> {
  await setMigrationStage({
    servers: await state.bound(),
    connection: 'old',
    migration: state.name,
    stage: step.stage,
    readPercent: step.readPercent,
    ...(fenced !== undefined && { fenced }),
  });
}

/**
 * Moves from the step at `from`, whose writes' mirrors may still be landing after the writes
 * answered (model/stages.ts mirrorsMayTrail), to the step at `to`, whose reads go to new: first the
 * write fence on `from` until every router acknowledged it (its trailing mirrors landed), then `to`,
 * which lifts it. So no read on new misses a write that answered before it. The routers that did not
 * acknowledge in time; then the fence is lifted and the migration stays at `from`.
 */
export async function enterPastTrailingMirrors(
  state: MigrationState,
  from: number,
  to: number,
): Promise<string[]> {
  const { steps } = state;
  const fencedAt = Date.now();
  const missing = await raiseWriteFence({
    migration: state.name,
    servers: await state.bound(),
    at: steps[from]!,
    timeoutMs: state.settings.fenceTimeoutMs,
  });
  await setStage(state, steps[missing.length > 0 ? from : to]!);
  if (missing.length === 0) {
    const at = Date.now();
    const fencedMs = at - fencedAt;
    (state.status.liveFences ??= []).push({ at, fencedMs });
    state.note(`writes waited at most ${fencedMs} ms for the mirrors in flight before reads went to new`);
  }
  return missing;
}

/** Moves write authority from the step at `from` to the one at `to`; records the switch either way. */
export async function switchWrites(
  state: MigrationState,
  from: number,
  to: number,
): Promise<WriteSwitchResult> {
  const { steps, status } = state;
  const direction = to >= state.switchedAt ? 'to-new' : 'to-old';
  state.setPhase(direction === 'to-new' ? 'switching' : 'rolling-back');
  const result = await switchAuthority({
    migration: state.name,
    servers: await state.bound(),
    tables: state.tables,
    from: { side: direction === 'to-new' ? 'old' : 'new', ...steps[from]! },
    to: { side: direction === 'to-new' ? 'new' : 'old', ...steps[to]! },
    reconciliationWorkflowId: state.reconciliationId,
    fenceTimeoutMs: state.settings.fenceTimeoutMs,
  });
  status.switches.push({ direction, at: Date.now(), ...result });
  state.note(
    result.switched
      ? `write authority moved ${direction === 'to-new' ? 'to new' : 'back to old'}: writes waited at most ${result.fencedMs} ms, ${result.changesDrained} changes drained`
      : `the write switch ${direction === 'to-new' ? 'to new' : 'back to old'} did not happen: ${result.reason}`,
  );
  return result;
}
