// `migrate switch --dry-run`'s first answer: can the write switch start now, and what does it wait
// for, at each place a migration can stand (client/switch-preview.ts switchReadiness); and each
// router's state toward the fence (client/routers.ts routerState).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { routerState } from '../../client/routers';
import { switchReadiness } from '../../client/switch-preview';
import type { RegisteredRouter } from '../../db/stage-store';
import { migrationInputFor } from '../../config/migration-input';
import { parseMigrationConfig } from '../../config/load';
import type { MigrationHold, MigrationStatus } from '../../model/messages';
import { planSteps, stepLabel } from '../../model/migration-plan';
import { initialMemory } from '../../workflows/migration/state';

const steps = planSteps([25, 100]);

/** The migration `orders` at `step` (a label), held when `held` is given. */
function at(step: string, held: Pick<MigrationHold, 'kind' | 'reason'> | null = null): MigrationStatus {
  const input = migrationInputFor(parseMigrationConfig({ name: 'orders', tables: ['public.orders'] }));
  const position = steps.findIndex((s) => stepLabel(s) === step);
  const stage = steps[position]!;
  return {
    ...initialMemory(input).status,
    step,
    position,
    stage: stage.stage,
    readPercent: stage.readPercent,
    phase: held === null ? 'soaking' : 'held',
    held: held === null ? null : { ...held, since: 0 },
  };
}

describe('whether the write switch could start now', () => {
  it('counts the steps still to pass before the last read step', () => {
    const ready = switchReadiness(at('shadow'), steps, true);
    assert.equal(ready.canStart, false);
    assert.equal(ready.direction, 'to-new');
    assert.equal(
      ready.waitsFor,
      'the migration is at shadow; 2 steps to pass before live 100%, then its soak and gates, then `migrate approve`',
    );
  });

  it('at the last read step: its soak and gates, an approval, a failed gate, a failed switch', () => {
    assert.deepEqual(
      [switchReadiness(at('live 100%'), steps, false)].map((r) => [r.canStart, r.waitsFor]),
      [[false, 'it waits for live 100% to finish its soak and pass its gates']],
    );
    const approval = switchReadiness(
      at('live 100%', { kind: 'approval', reason: "entering switched needs an operator's approval" }),
      steps,
      true,
    );
    assert.equal(approval.canStart, true);
    assert.match(approval.waitsFor, /^it waits for `migrate approve orders`/);
    const gate = switchReadiness(at('live 100%', { kind: 'gate', reason: 'error rate 2%' }), steps, true);
    assert.equal(gate.canStart, false);
    assert.match(gate.waitsFor, /gate hold to end \(error rate 2%\).*`migrate approve` overrides/);
    const failed = switchReadiness(
      at('live 100%', { kind: 'switch-failed', reason: 'routers did not acknowledge' }),
      steps,
      true,
    );
    assert.equal(failed.canStart, true);
    assert.match(failed.waitsFor, /`migrate resume orders` to try again/);
  });

  it('once new holds authority, previews the switch back that a rollback runs', () => {
    const back = switchReadiness(at('switched'), steps, true);
    assert.equal(back.direction, 'to-old');
    assert.equal(stepLabel(back.target), 'live 100%');
    assert.equal(back.canStart, true);
    assert.match(back.waitsFor, /`migrate rollback orders`/);
  });
});

describe("a router's state toward the fence", () => {
  const router = (seen: Partial<RegisteredRouter>): RegisteredRouter => ({
    routerId: 'app-1',
    stage: 'live',
    version: 7,
    host: 'web-1',
    pid: 1,
    silentSeconds: 1,
    sessionGone: false,
    fenceAcknowledged: null,
    stats: null,
    ...seen,
  });

  it('live and behind must acknowledge; silent and gone are not waited for', () => {
    assert.equal(routerState(router({}), 7), 'live');
    assert.equal(routerState(router({ version: 6 }), 7), 'behind');
    assert.equal(routerState(router({ version: null }), 7), 'behind');
    assert.equal(routerState(router({ silentSeconds: 16 }), 7), 'silent');
    assert.equal(routerState(router({ sessionGone: true, silentSeconds: 16 }), 7), 'gone');
  });
});
