// The migration's steps, rollback targets and cutover config: pure logic, no servers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { migrationInputFor } from '../../config/migration-input';
import { parseMigrationConfig } from '../../config/load';
import { configRejection } from '../harness/config';
import { planSteps, readStepProblems, rollbackTarget, stepLabel } from '../../model/migration-plan';

const steps = planSteps([1, 5, 25, 50, 100]);
const at = (label: string) => steps.findIndex((step) => stepLabel(step) === label);

const cutoverRejection = (cutover: unknown) => configRejection({ name: 'm', tables: ['t'], cutover });

describe('migration plan', () => {
  it('lays out off, dual_write, shadow, each live step, switched, complete', () => {
    assert.deepEqual(steps.map(stepLabel), [
      'off',
      'dual_write',
      'shadow',
      'live 1%',
      'live 5%',
      'live 25%',
      'live 50%',
      'live 100%',
      'switched',
      'complete',
    ]);
  });

  it('rolls back only to earlier steps, by stage or live percentage', () => {
    assert.equal(rollbackTarget('off', steps, at('live 25%')), at('off'));
    assert.equal(rollbackTarget('live', steps, at('live 25%')), at('live 5%'));
    assert.equal(rollbackTarget('live:1', steps, at('live 25%')), at('live 1%'));
    assert.equal(rollbackTarget('live 50%', steps, at('switched')), at('live 50%'));
    assert.equal(rollbackTarget(' Switched ', steps, at('complete')), at('switched'));
    assert.throws(
      () => rollbackTarget('switched', steps, at('shadow')),
      /at shadow; it can roll back to off, dual_write, not to switched/,
    );
    assert.throws(() => rollbackTarget('live:50', steps, at('live 25%')), /not to live:50/);
    assert.throws(() => rollbackTarget('off', steps, at('off')), /nothing earlier to roll back to/);
    assert.throws(
      () => rollbackTarget('live:30', steps, at('complete')),
      /there is no step live:30 in this migration/,
    );
    assert.throws(() => rollbackTarget('sideways', steps, at('complete')), /there is no step sideways/);
  });

  it('checks a read ramp: whole rising percentages ending with 100', () => {
    assert.deepEqual(readStepProblems([1, 10, 100]), []);
    assert.match(readStepProblems([10, 5, 100]).join(), /must grow step by step; 5 comes after 10/);
    assert.match(readStepProblems([10, 50]).join(), /must end with 100/);
    assert.match(readStepProblems([0.5, 100]).join(), /0.5 is not a whole percentage/);
    assert.match(readStepProblems([]).join(), /at least one/);
  });

  it('reads the cutover config with defaults and durations, and names bad fields', () => {
    const input = migrationInputFor(parseMigrationConfig({ name: 'm', tables: ['t'] }));
    assert.deepEqual(input.settings.readSteps, [1, 5, 25, 50, 100]);
    assert.equal(input.settings.stepSoakMs, 10 * 60_000);
    assert.equal(input.settings.completionSoakMs, 14 * 24 * 3600_000);
    assert.deepEqual(input.settings.approvals, ['switched']);
    assert.equal(input.settings.onGateFailure, 'hold');
    assert.equal(input.settings.fenceTimeoutMs, 10_000);
    assert.equal(input.settings.gates.maxShadowMismatchRate, 0.001);
    assert.equal(input.settings.verification.settleMs, 2000);
    assert.equal(input.tables[0]!.table.table, 't');
    const tuned = migrationInputFor(
      parseMigrationConfig({
        name: 'm',
        tables: ['t'],
        cutover: { stepSoak: '90s', soak: '2 days', readSteps: [10, 100] },
      }),
    );
    assert.equal(tuned.settings.stepSoakMs, 90_000);
    assert.equal(tuned.settings.completionSoakMs, 2 * 24 * 3600_000);
    assert.match(cutoverRejection({ stepSoak: 'soon' }), /cutover\.stepSoak: soon is not a duration/);
    assert.match(cutoverRejection({ readSteps: [50, 25] }), /cutover\.readSteps: must grow step by step/);
    assert.match(cutoverRejection({ approvals: ['retire'] }), /cutover\.approvals\.0/);
    assert.match(
      cutoverRejection({ gates: { maxShadowMismatchRate: 2 } }),
      /cutover\.gates\.maxShadowMismatchRate: is a fraction from 0 to 1/,
    );
    assert.match(cutoverRejection({ onGateFailure: 'panic' }), /cutover\.onGateFailure/);
  });
});
