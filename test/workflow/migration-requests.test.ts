// The operator's requests to the migration workflow, in a time-skipping test server with fake
// activities (harness/time-skipping.ts): a rollback from every step to the one before it and to
// `off`, an abort from every step, through the write switch the other way wherever new holds write
// authority; the reverse switch failing; the requests refused and why; pause and resume in a soak
// and during the backfill. Each test starts at the step it is about, from the state a run carries
// into the next (harness/migration-workflow.ts, carriedAt), with every approval point set so the
// migration waits there instead of moving on.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { APPROVAL_POINTS, newIsAuthoritative, planSteps, stepLabel } from '../../model/migration-plan';
import { backfillProgressQuery } from '../../workflows/messages';
import { REMOVAL_CALLS, callText, reconciliationStatus } from '../harness/fake-activities';
import {
  MigrationUnderTest,
  backfillingMigration,
  carriedAt,
  migrationInput,
  refusal,
} from '../harness/migration-workflow';
import { timeSkippingSuite } from '../harness/time-skipping';
import { waitFor } from '../harness/wait';

const { fakes, ts } = timeSkippingSuite('migration-requests');

const READ_STEPS = [25, 100];
const STEPS = planSteps(READ_STEPS);
const LABELS = STEPS.map(stepLabel);

/** Each call after the first `from` call, as "activity connection". */
function callsFrom(activity: string): string[] {
  const calls = fakes.called();
  const first = calls.findIndex((call) => call.activity === activity);
  assert.ok(first >= 0, `${activity} was not called`);
  return calls.slice(first).map(callText);
}

/**
 * A migration waiting at `label` with its own work done: at an approval point, or, at `complete`,
 * in its soak. From `dual_write` on every table is backfilled and verified (carriedAt).
 */
async function waitingAt(name: string, label: string): Promise<MigrationUnderTest> {
  const input = migrationInput(name, { readSteps: READ_STEPS, approvals: [...APPROVAL_POINTS] });
  const migration = await MigrationUnderTest.start(ts(), {
    ...input,
    resume: carriedAt(input, label, { stepPassed: true }),
  });
  if (label === 'complete') await migration.until('soaking', (status) => status.phase === 'soaking');
  else await migration.heldFor('approval', label);
  return migration;
}

describe('rollback from each step', () => {
  const cases = LABELS.flatMap((from, position) =>
    position === 0
      ? []
      : [...new Set([position - 1, 0])].map((target) => ({ from, position, to: LABELS[target]!, target })),
  );
  for (const { from, position, to, target } of cases) {
    const crossesSwitch = newIsAuthoritative(STEPS[position]!) && !newIsAuthoritative(STEPS[target]!);
    it(`from ${from} to ${to}${crossesSwitch ? ', through the write switch back to old' : ''}, then holds until resumed`, async () => {
      const migration = await waitingAt(`rollback-${position}-${target}`, from);
      const stagesBefore = fakes.stagesSet().length;

      assert.deepEqual(await migration.rollback(to.replace(' ', ':').replace('%', '')), { from, to });
      const held = await migration.status();
      assert.equal(held.step, to);
      assert.equal(held.position, target);
      assert.equal(held.held?.kind, 'rollback');
      assert.equal(
        held.held?.reason,
        `rolled back from ${from} to ${to} by tester; resume or approve to go forward again`,
      );
      assert.deepEqual(
        held.rollbacks.map(({ from: f, to: t, by }) => [f, t, by]),
        [[from, to, 'tester']],
      );
      assert.equal(held.soakUntil, null);
      assert.equal(held.verifiedClean, target <= 1 ? null : true);
      if (crossesSwitch) {
        // New's writes since the switch are carried back before old takes writes again (hazard 8).
        assert.deepEqual(
          fakes
            .inputs('moveWriteAuthority')
            .map(({ from: f, to: t, stage, readPercent }) => [f, t, stage, readPercent]),
          [['new', 'old', STEPS[target]!.stage, STEPS[target]!.readPercent]],
        );
        assert.deepEqual(
          fakes.inputs('ensureReconciliation').map(({ from: f, to: t }) => `${f}→${t}`),
          ['old→new'],
        );
        assert.equal(held.switches.at(-1)?.direction, 'to-old');
      } else {
        assert.deepEqual(fakes.called('moveWriteAuthority'), []);
        assert.deepEqual(fakes.stagesSet().slice(stagesBefore), [
          `${STEPS[target]!.stage} ${STEPS[target]!.readPercent}`,
        ]);
      }

      // Resume: the step rolled back to does its work again (it is not taken as passed).
      await migration.resume();
      await migration.until(
        `${to} again, its own work done`,
        (status) => status.held === null || (status.held.kind === 'approval' && status.step === to),
      );
      const again = await migration.status();
      assert.equal(again.step, to);
      assert.notEqual(again.held?.kind, 'rollback');
    });
  }

  it('the rollback signal goes back one step', async () => {
    const migration = await waitingAt('rollback-signal', 'live 100%');
    await migration.rollbackOneStep();
    const held = await migration.heldFor('rollback', 'live 25%');
    assert.deepEqual(
      held.rollbacks.map(({ from, to, by }) => [from, to, by]),
      [['live 100%', 'live 25%', 'operator (signal)']],
    );
    assert.deepEqual(fakes.stagesSet(), ['live 25']);
  });

  it('a rollback hold is released by approve as well, and the step does its work again', async () => {
    const migration = await waitingAt('rollback-approve', 'live 25%');
    await migration.rollback('shadow');
    const held = await migration.heldFor('rollback', 'shadow');
    assert.deepEqual(await migration.approve(), { released: held.held!.reason });
    // Approved as resumed: shadow does its work again, its soak first.
    const soaking = await migration.until('soaking at shadow', (status) => status.phase === 'gating');
    assert.equal(soaking.step, 'shadow');
    assert.equal(soaking.held, null);
  });

  it('a reverse switch that does not happen leaves authority on new: the update says why and the migration stays where it was', async () => {
    const migration = await waitingAt('rollback-fence', 'switched');
    fakes.on('awaitRouterFence', () => ({ acknowledged: ['router-a'], missing: ['router-b'] }));
    const reason = await refusal(migration.rollback('live:100'));
    assert.equal(
      reason,
      'the rollback to live 100% did not happen, authority stays on new: routers did not acknowledge the write fence in time: router-b',
    );
    const status = await migration.until('back at its hold', (s) => s.phase === 'held');
    assert.equal(status.step, 'switched');
    assert.equal(status.held?.kind, 'approval');
    assert.deepEqual(status.rollbacks, []);
    assert.deepEqual(fakes.called('moveWriteAuthority'), []);
    // The fence came down again, at the stage it stood at.
    assert.deepEqual(fakes.stagesSet(), ['switched 100 +fence', 'switched 100']);
  });

  it('is refused, saying why, to a step that is not earlier, to no step, and while an abort is under way; a second one waits for the first', async () => {
    const migration = await waitingAt('rollback-refused', 'live 25%');
    assert.equal(
      await refusal(migration.rollback('live:100')),
      'the migration is at live 25%; it can roll back to off, dual_write, shadow, not to live:100',
    );
    assert.equal(
      await refusal(migration.rollback('nowhere')),
      'there is no step nowhere in this migration; its steps are off, dual_write, shadow, live:25, live:100, switched, complete',
    );
    // A rollback asked for while one is under way is carried out after it, from where that one left.
    const stage = fakes.gate();
    fakes.on('setMigrationStage', async (input) => {
      await stage.opened;
      return { stage: input.stage, readPercent: input.readPercent ?? 0, version: 9, fenced: false };
    });
    const first = migration.rollback('shadow');
    await migration.until('rolling back', (status) => status.phase === 'rolling-back');
    const second = migration.rollback('off');
    stage.open();
    assert.deepEqual(await first, { from: 'live 25%', to: 'shadow' });
    assert.deepEqual(await second, { from: 'shadow', to: 'off' });
    assert.deepEqual(fakes.stagesSet(), ['shadow 0', 'off 0']);

    // While an abort is under way (reconciliation stopping), neither a rollback nor another abort.
    let stopped: () => void = () => undefined;
    const stopping = new Promise<void>((resolve) => (stopped = resolve));
    fakes.on('stopReconciliation', async () => {
      await stopping;
      return reconciliationStatus({ stopping: 'now' });
    });
    const aborting = migration.abort();
    await migration.until('aborting', (status) => status.phase === 'aborting');
    assert.equal(
      await refusal(migration.rollback('off')),
      'the migration is aborting; it can no longer roll back',
    );
    assert.equal(await refusal(migration.abort()), 'the migration is aborting; there is nothing to abort');
    stopped();
    assert.deepEqual(await aborting, { abortedAt: 'off' });
  });

  it('at off there is nothing to roll back to, and the rollback signal is ignored with a note', async () => {
    const migration = await waitingAt('rollback-off', 'off');
    assert.equal(
      await refusal(migration.rollback('off')),
      'the migration is at off; there is nothing earlier to roll back to',
    );
    await migration.rollbackOneStep();
    const status = await migration.handledAll();
    assert.ok(
      status.events.some((event) => event.text === 'rollback signal ignored: the migration is at off, held'),
    );
    assert.equal(status.held?.kind, 'approval');
  });
});

describe('abort from each step', () => {
  LABELS.forEach((from, position) => {
    const switchesBack = newIsAuthoritative(STEPS[position]!);
    it(`from ${from}: everyone back on old${switchesBack ? ' through the write switch' : ''}, capture, guards and claims removed, the workflow ends`, async () => {
      const migration = await waitingAt(`abort-${position}`, from);
      assert.deepEqual(await migration.abort(), { abortedAt: from });
      const final = await migration.result();
      assert.equal(final.phase, 'aborted');
      assert.equal(final.step, 'off');
      assert.equal(final.held, null);
      assert.match(
        final.events.at(-1)!.text,
        new RegExp(`^aborted at ${from} by tester: everyone is on old; capture, guards and claims removed`),
      );
      const expected = [
        ...(switchesBack
          ? ['stopReconciliation', 'setMigrationStage old', 'awaitRouterFence old', 'moveWriteAuthority']
          : []),
        ...(switchesBack ? ['ensureReconciliation'] : []),
        'setMigrationStage old',
        'stopReconciliation',
        ...REMOVAL_CALLS,
      ];
      assert.deepEqual(callsFrom(switchesBack ? 'stopReconciliation' : 'setMigrationStage'), expected);
      assert.equal(fakes.stagesSet().at(-1), 'off 0');
      if (switchesBack) {
        assert.deepEqual(
          fakes.inputs('moveWriteAuthority').map(({ from: f, to }) => `${f}→${to}`),
          ['new→old'],
        );
      }
    });
  });

  it('an abort whose reverse switch does not happen leaves authority on new, says why, and the migration goes on', async () => {
    const migration = await waitingAt('abort-fence', 'complete');
    fakes.on('awaitRouterFence', () => ({ acknowledged: [], missing: ['router-b'] }));
    assert.equal(
      await refusal(migration.abort()),
      'the abort did not happen, authority stays on new: routers did not acknowledge the write fence in time: router-b',
    );
    const status = await migration.until('soaking again', (s) => s.phase === 'soaking');
    assert.equal(status.step, 'complete');
    assert.deepEqual(fakes.called('removeChangeCapture'), []);
    // The soak goes on: it still ends fourteen days after it began, then retiring waits for approval.
    await migration.soakPasses();
    await migration.heldFor('retire', 'complete');
  });

  it('an abort in the middle of the backfill stops waiting for it and ends', async () => {
    const stopping = fakes.gate();
    fakes.on('stopReconciliation', async () => {
      await stopping.opened;
      return reconciliationStatus({ stopping: 'now' });
    });
    const { migration, planned, backfill } = await backfillingMigration(ts(), fakes, 'abort-backfill', {
      readSteps: READ_STEPS,
    });
    const aborted = migration.abort();
    // The abort goes on while the backfill still waits for its plan.
    await migration.until('aborting', (status) => status.phase === 'aborting');
    assert.equal((await backfill.describe()).status.name, 'RUNNING');
    planned.open();
    await backfill.result();
    stopping.open();
    assert.deepEqual(await aborted, { abortedAt: 'dual_write' });
    const final = await migration.result();
    assert.equal(final.phase, 'aborted');
  });
});

describe('pause and resume', () => {
  it('a pause during a soak stops the step where it is; resume soaks again and goes on', async () => {
    const input = migrationInput('pause-soak', { readSteps: READ_STEPS });
    const migration = await MigrationUnderTest.start(ts(), { ...input, resume: carriedAt(input, 'shadow') });
    await migration.until('soaking', (status) => status.phase === 'gating');
    await migration.pause();
    const paused = await migration.until('paused', (status) => status.phase === 'paused');
    assert.equal(paused.paused, true);
    assert.equal(paused.step, 'shadow');
    assert.ok(paused.events.some((event) => event.text === 'paused by an operator'));
    // Paused, the gates are not read: only the baseline at the start of the soak was.
    assert.equal(fakes.called('readGateFigures').length, 1);
    assert.equal(
      await refusal(migration.approve()),
      'nothing is waiting for approval: the migration is at shadow, paused',
    );

    await migration.resume();
    await migration.until('soaking again', (status) => status.phase === 'gating' && !status.paused);
    await migration.soakPasses();
    const next = await migration.until('live 25%', (status) => status.step === 'live 25%');
    assert.ok(next.events.some((event) => event.text === 'resumed by an operator'));
  });

  it('a pause during the backfill is passed on to the backfill, and so is resume', async () => {
    const { migration, planned, backfill } = await backfillingMigration(ts(), fakes, 'pause-backfill', {
      readSteps: READ_STEPS,
      approvals: ['shadow'],
    });
    await migration.pause();
    // The migration keeps waiting for its backfill, which the pause reached.
    const paused = await migration.until('paused', (status) => status.paused);
    assert.equal(paused.phase, 'backfilling');
    await waitFor('the backfill paused', async () => (await backfill.query(backfillProgressQuery)).paused);
    await migration.resume();
    await waitFor('the backfill resumed', async () => !(await backfill.query(backfillProgressQuery)).paused);
    planned.open();
    const held = await migration.heldFor('approval', 'dual_write');
    assert.equal(held.tables[0]!.backfillDone, true);
    assert.equal(held.verifiedClean, true);
  });
});

describe('what a request needs', () => {
  it('approve refuses when nothing waits for it', async () => {
    const input = migrationInput('approve-nothing', { readSteps: READ_STEPS });
    const migration = await MigrationUnderTest.start(ts(), {
      ...input,
      resume: carriedAt(input, 'live 25%'),
    });
    await migration.until('soaking', (status) => status.phase === 'gating');
    assert.equal(
      await refusal(migration.approve()),
      'nothing is waiting for approval: the migration is at live 25%, gating',
    );
  });
});
