// The ways back and out: a rollback to any earlier step (through the write switch the other way
// from `switched` or `complete`, so no write made on new is lost: hazard 8), an abort to `off` that
// removes what the migration put on both sides, and retiring old after the soak.
import { newIsAuthoritative, stepLabel } from '../../model/migration-plan';
import {
  removeChangeCapture,
  removeMigrationHelpers,
  removeTruncateGuard,
  removeWriteGuard,
  stopReconciliation,
} from './activities';
import type { AbortRequest, MigrationState, RollbackRequest } from './state';
import { setStage, switchWrites } from './transitions';

/**
 * Removes what the migration put on both sides (retire and abort): capture, guards, its claims and
 * its rows in the helper tables; the helper schema too when nothing else uses it. Only its own:
 * another migration's triggers, claims and changes are never touched. Returns what stayed.
 */
export async function removeOwnObjects(state: MigrationState): Promise<string[]> {
  const scope = { migration: state.name, servers: await state.bound(), tables: state.tables };
  for (const side of ['new', 'old'] as const) {
    await removeChangeCapture({ ...scope, connection: side, discardPending: true });
  }
  for (const side of ['old', 'new'] as const) {
    await removeWriteGuard({ ...scope, connection: side });
    await removeTruncateGuard({ ...scope, connection: side });
  }
  const kept: string[] = [];
  for (const side of ['new', 'old'] as const) {
    const removal = await removeMigrationHelpers({
      servers: scope.servers,
      connection: side,
      migration: state.name,
    });
    if (!removal.dropped) kept.push(`${side}'s helper schema stays (${removal.kept})`);
  }
  return kept;
}

/** Goes back to the request's step and holds there; the waiting update gets its answer. */
export async function rollBack(state: MigrationState, request: RollbackRequest): Promise<void> {
  const { steps, status } = state;
  const from = status.position;
  const target = request.target;
  const fromLabel = status.step;
  const toLabel = stepLabel(steps[target]!);
  if (target >= from) {
    state.answers.set(request.ticket, { ok: false, reason: `the migration is already at ${fromLabel}` });
    return;
  }
  state.setPhase('rolling-back');
  if (newIsAuthoritative(steps[from]!) && !newIsAuthoritative(steps[target]!)) {
    const result = await switchWrites(state, from, target);
    if (!result.switched) {
      state.answers.set(request.ticket, {
        ok: false,
        reason: `the rollback to ${toLabel} did not happen, authority stays on new: ${result.reason}`,
      });
      state.setPhase(status.held === null ? 'gating' : 'held');
      return;
    }
  } else {
    await setStage(state, steps[target]!);
  }
  state.arrive(target);
  if (target <= 1) status.verifiedClean = null;
  status.soakUntil = null;
  status.rollbacks.push({ from: fromLabel, to: toLabel, at: Date.now(), by: request.by });
  state.answers.set(request.ticket, { ok: true, value: { from: fromLabel, to: toLabel } });
  state.hold(
    'rollback',
    `rolled back from ${fromLabel} to ${toLabel} by ${request.by}; resume or approve to go forward again`,
  );
}

/** Rolls back to `off` and removes capture, guards and claims; true when the migration ended. */
export async function abort(state: MigrationState, request: AbortRequest): Promise<boolean> {
  const { steps, status } = state;
  const from = status.step;
  state.setPhase('aborting');
  if (newIsAuthoritative(steps[status.position]!)) {
    const result = await switchWrites(state, status.position, 0);
    if (!result.switched) {
      state.answers.set(request.ticket, {
        ok: false,
        reason: `the abort did not happen, authority stays on new: ${result.reason}`,
      });
      state.setPhase(status.held === null ? 'gating' : 'held');
      return false;
    }
  }
  await setStage(state, steps[0]!);
  state.arrive(0);
  await stopReconciliation({ workflowId: state.reconciliationId });
  await removeOwnObjects(state);
  status.held = null;
  state.answers.set(request.ticket, { ok: true, value: { from, to: 'off' } });
  state.note(
    `aborted at ${from} by ${request.by}: everyone is on old; capture, guards and claims removed, new keeps its rows`,
  );
  state.setPhase('aborted');
  return true;
}

/** After the soak, on approval: reconciliation stops and the migration's objects go; old keeps its data. */
export async function retire(state: MigrationState): Promise<void> {
  state.setPhase('retiring');
  await stopReconciliation({ workflowId: state.reconciliationId });
  // Old is being let go: what reverse sync had not carried yet stays behind with the change log.
  const kept = await removeOwnObjects(state);
  state.note(
    `retired: capture, guards, claims and flags removed${kept.length > 0 ? `; ${kept.join('; ')}` : ', helper tables dropped'}; old's data is untouched`,
  );
  state.setPhase('retired');
}
