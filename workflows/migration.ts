// The migration: one long-running workflow per migration (id from its name, see ids.ts) that moves
// it through its steps and lets an operator steer it.
//
//   off ─ prepare: bind the servers, refuse what cannot be migrated (hazard 10), claim the tables on
//         both sides (one table, one migration), TRUNCATE guards on both sides, capture on old,
//         reconciliation
//   dual_write ─ routers write old then new; backfill every table; verify new equals old
//   shadow ─ a sample of reads also runs on new and is compared; the query benchmark runs
//   live p% ─ for each read step: p% of reads from new (entered from shadow once the mirrors that
//         trailed their writes landed, behind the write fence)
//   switched ─ the write switch (write-switch.ts): new takes writes, old is reverse-synced
//   complete ─ writes on new only; old read-only and reverse-synced for the soak (a durable timer)
//   retire ─ on approval: capture, guards, flags and helper tables go; old's data stays
//
// Each step from shadow on runs for its soak window, then its gates are read (shadow mismatch rate,
// error rate and latency on new, reconciliation backlog, last verification clean, query ratio). A
// failed gate holds the migration with its reason (or steps back one read step first, when so
// configured); `approve` releases it, `resume` measures again. Steps listed in `approvals` wait for
// an operator before they are entered. `pause` stops the ramp (and the backfill) where it is; a
// rollback goes back any number of steps, from `switched` or `complete` through the write switch the
// other way, so no write made on new is lost (hazard 8); `abort` rolls back to `off` and removes
// capture and guards. The state travels through continue-as-new; long waits are timers.
// Work that fails for a cause retrying cannot heal (a schema change on either side, a worker on the
// wrong servers, a constraint the other side enforces), a reconciliation that cannot carry a table's
// changes, and a verification that finds differences no write in flight explains all hold the
// migration with the cause instead of failing it or going on; see MigrationHold.
//
// This file wires the parts together and runs the main loop, one turn at a time:
//   migration/state.ts ─ the state the parts share (status, memory, requests, trouble)
//   migration/requests.ts ─ the message handlers: they record, the main loop acts
//   migration/steps.ts ─ each step's work and gates (migration/gates.ts: the pure checks)
//   migration/transitions.ts ─ setting the stage and switching write authority
//   migration/way-back.ts ─ rollback, abort, retire
//   migration/holds.ts ─ trouble becoming holds, and what releases a hold
import {
  allHandlersFinished,
  condition,
  continueAsNew,
  ContinueAsNew,
  isCancellation,
  workflowInfo,
} from '@temporalio/workflow';
import type { MigrationStatus } from '../model/messages';
import { stepLabel, type ApprovalPoint } from '../model/migration-plan';
import { failureCause } from './migration/failure-cause';
import { awaitRelease, holdForTrouble } from './migration/holds';
import { answering, installRequestHandlers } from './migration/requests';
import { MigrationState, type MigrationInput } from './migration/state';
import { enter, runStep, waitUnlessInterrupted } from './migration/steps';
import { abort, rollBack } from './migration/way-back';

export type { MigrationInput, MigrationSettings } from './migration/state';

/** One turn of the main loop; true when the migration has ended. */
async function turn(state: MigrationState): Promise<boolean> {
  const { status, memory, settings, steps } = state;
  if (state.pendingAbort !== null) {
    const request = state.pendingAbort;
    state.pendingAbort = null;
    return answering(state, request.ticket, () => abort(state, request));
  }
  if (state.pendingRollback !== null) {
    const request = state.pendingRollback;
    state.pendingRollback = null;
    await answering(state, request.ticket, () => rollBack(state, request));
    return false;
  }
  if (status.paused) {
    state.setPhase('paused');
    await condition(() => !status.paused || state.interrupted());
    return false;
  }
  if (holdForTrouble(state)) return false;
  if (status.held !== null) return awaitRelease(state, status.held);
  // Between steps, with no child running here: the next run carries the whole state.
  if (state.backfilling === undefined && workflowInfo().continueAsNewSuggested) {
    await condition(allHandlersFinished);
    await continueAsNew<typeof migrationWorkflow>({ ...state.input, resume: memory });
  }
  if (!memory.stepPassed) {
    memory.stepPassed = await runStep(state);
    return false;
  }
  if (status.position === state.last) {
    // complete: the soak, then retiring waits for an operator.
    status.soakUntil ??= Date.now() + settings.completionSoakMs;
    state.setPhase('soaking');
    const left = status.soakUntil - Date.now();
    if (left > 0 && !(await waitUnlessInterrupted(state, left))) return false;
    state.hold(
      'retire',
      'the soak is over: approve to retire (removes capture, guards, claims, flags and helper tables; old keeps its data)',
    );
    return false;
  }
  const next = status.position + 1;
  const point = steps[next]!.stage as ApprovalPoint;
  if (settings.approvals.includes(point) && memory.approvedStep !== next) {
    state.hold('approval', `entering ${stepLabel(steps[next]!)} needs an operator's approval`);
    return false;
  }
  if (await enter(state, next)) memory.approvedStep = null;
  return false;
}

export async function migrationWorkflow(input: MigrationInput): Promise<MigrationStatus> {
  const state = new MigrationState(input);
  const { status, memory } = state;
  installRequestHandlers(state);

  // ---- The main loop: work that fails for a cause retrying cannot heal holds with the cause. ----
  state.setPhase(status.phase);
  for (;;) {
    try {
      if (await turn(state)) return status;
    } catch (err) {
      if (isCancellation(err) || err instanceof ContinueAsNew) throw err;
      const cause = failureCause(err);
      if (!memory.prepared) {
        // Refused while preparing (hazard 10): nothing was written, the migration ends with the reason.
        status.error = cause.message;
        state.note(`refused: ${cause.message}`);
        throw err;
      }
      state.hold('failure', `${status.step}: ${cause.message}`, { code: cause.code, table: cause.table });
    }
  }
}
