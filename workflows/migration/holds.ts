// Holding and letting go: the trouble the migration's own workflows report becomes a hold with its
// cause; a hold waits for what releases it (see MigrationHold: approve releases every hold, resume
// all but approval, retire and sync, a sync hold ends by itself once reconciliation recovers); after
// a `failure` hold, recovering checks the schema again when it changed and retries the work.
import { condition, isCancellation } from '@temporalio/workflow';
import { needsOperator } from '../../model/lasting-failures';
import type { MigrationHold, SyncFailure } from '../../model/messages';
import { acceptSchemaChanges } from './activities';
import { failureCause } from './failure-cause';
import type { MigrationState } from './state';
import { setStage } from './transitions';
import { retire } from './way-back';
import { resumeSignal } from '../messages';

/** Holds for trouble reported and not held for yet; true when it did. */
export function holdForTrouble(state: MigrationState): boolean {
  if (state.status.held !== null) return false;
  if (state.backfillTrouble !== null) {
    const trouble = state.backfillTrouble;
    state.backfillTrouble = null;
    state.hold('failure', `the backfill of ${trouble.table} cannot go on: ${trouble.message}`, {
      code: trouble.code,
      table: trouble.table,
    });
    return true;
  }
  const failing: SyncFailure[] = state.syncHolds();
  if (failing.length === 0) return false;
  const what = `reconciliation cannot carry changes over: ${failing.map((f) => `${f.table} (${f.attempts} tries since ${new Date(f.since).toISOString()}): ${f.message}`).join('; ')}`;
  // A schema change, the wrong servers or a failure no retry heals (a refused password, a missing
  // privilege or object) needs the operator, as when the backfill meets it. A constraint can clear
  // as the rows change: it holds as sync.
  const lasting = failing.find((f) => needsOperator(f.code));
  if (lasting !== undefined) {
    state.hold('failure', `${what}. Mend it, then resume`, {
      code: lasting.code,
      table: lasting.table,
    });
  } else {
    state.hold(
      'sync',
      `${what}. It keeps trying and this hold ends by itself once it can; resume asks it to try now, approve goes on regardless`,
      { code: failing[0]!.code, table: failing[0]!.table },
    );
  }
  return true;
}

/**
 * Waits until the current hold is released (or an operator asks for a rollback or an abort, or
 * trouble comes that an approval point or retiring gives way to), then does what the release means.
 * True when the migration has ended (retired).
 */
export async function awaitRelease(state: MigrationState, held: MigrationHold): Promise<boolean> {
  const { status, memory } = state;
  const seenApprovals = state.approvals;
  const seenResumes = state.resumes;
  // A hold that the next turn puts back by itself (an approval point, retiring) gives way to trouble,
  // so the reason shown is the one that matters now.
  const givesWay = () =>
    (held.kind === 'approval' || held.kind === 'retire') &&
    (state.backfillTrouble !== null || state.syncHolds().length > 0);
  await condition(
    () =>
      state.interrupted() ||
      givesWay() ||
      state.approvals > seenApprovals ||
      (held.kind === 'sync' && state.syncHolds().length === 0) ||
      (!['approval', 'retire', 'sync'].includes(held.kind) && state.resumes > seenResumes),
  );
  if (state.interrupted()) return false;
  status.held = null;
  const approved = state.approvals > seenApprovals;
  if (givesWay() && !approved) return false;
  if (approved) {
    if (held.kind === 'gate' || held.kind === 'verification') memory.stepPassed = true;
    if (held.kind === 'approval') memory.approvedStep = status.position + 1;
    if (held.kind === 'sync') memory.syncFailuresApproved = status.syncFailures.map((f) => f.table);
    if (held.kind === 'retire') {
      await retire(state);
      return true;
    }
  } else {
    memory.baseline = null;
  }
  if (held.kind === 'sync' && !approved) state.note('reconciliation recovered');
  if (held.kind === 'failure') await recover(state, held);
  return false;
}

/** After an operator released a `failure` hold: check the schema again when it changed, then retry. */
async function recover(state: MigrationState, held: MigrationHold): Promise<void> {
  const { memory } = state;
  if (held.cause?.code === 'SchemaChanged') {
    state.setPhase('preparing');
    let accepted: { summary: string };
    try {
      accepted = await acceptSchemaChanges({
        migration: state.name,
        servers: await state.bound(),
        tables: state.tables,
        completeLater: memory.createdTablesCompleted ? [] : memory.createdTables,
      });
    } catch (err) {
      if (isCancellation(err)) throw err;
      // Still a schema change to finish: the next resume checks again.
      state.hold('failure', failureCause(err).message, held.cause);
      return;
    }
    state.note(`schema checked again after the change: ${accepted.summary}`);
    // The same stage again, as a new version: every router reads the tables' shapes anew.
    await setStage(state, state.steps[state.status.position]!);
  }
  // Every partition held for a failure tries again; one that fails again says so anew.
  state.backfillTrouble = null;
  state.tellBackfills(resumeSignal);
  state.retrySync();
}
