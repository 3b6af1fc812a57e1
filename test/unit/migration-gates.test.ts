// The gate checks (workflows/migration/gates.ts) as plain functions: which checks each stage runs,
// where each limit lies, and what a figure nobody measured does.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { idleReconciliationStatus, type ReconciliationStatus } from '../../model/messages';
import { DEFAULT_GATES, type StagePosition } from '../../model/migration-plan';
import { gateFigures, queryBenchmark } from '../harness/fake-activities';
import { failedChecks, gateChecks, type GateInputs } from '../../workflows/migration/gates';

const RECONCILIATION: ReconciliationStatus = { ...idleReconciliationStatus(), runs: 1 };

function inputs(step: StagePosition, changes: Partial<GateInputs> = {}): GateInputs {
  return {
    step,
    limits: DEFAULT_GATES,
    figures: gateFigures(),
    reconciliation: RECONCILIATION,
    verifiedClean: true,
    queryBenchmark: null,
    ...changes,
  };
}

const names = (input: GateInputs) => gateChecks(input).map((check) => check.name);
const SHADOW: StagePosition = { stage: 'shadow', readPercent: 0 };
const LIVE: StagePosition = { stage: 'live', readPercent: 25 };

describe('gate checks', () => {
  it('each stage runs its own checks besides reconciliation and verification', () => {
    const common = ['reconciliation backlog', 'reconciliation failures', 'last verification clean'];
    assert.deepEqual(names(inputs({ stage: 'dual_write', readPercent: 0 })), common);
    assert.deepEqual(names(inputs(SHADOW)), ['shadow mismatch rate', ...common]);
    assert.deepEqual(names(inputs(LIVE)), ['error rate on new', 'read latency new/old', ...common]);
    assert.deepEqual(names(inputs({ stage: 'switched', readPercent: 100 })), [
      'error rate on new',
      ...common,
    ]);
    assert.deepEqual(names(inputs({ stage: 'complete', readPercent: 100 })), common);
  });

  it('a figure nobody measured passes, with a detail that says so; reconciliation not running fails', () => {
    const checks = gateChecks(inputs(LIVE, { reconciliation: null }));
    const latency = checks.find((check) => check.name === 'read latency new/old')!;
    assert.deepEqual(latency, {
      name: 'read latency new/old',
      value: null,
      limit: 2,
      ok: true,
      detail: 'not measured: reads ran on one side only',
    });
    assert.equal(failedChecks(checks), 'reconciliation backlog: reconciliation is not running');
  });

  it('a limit is reached, not passed, at its value', () => {
    const at = gateChecks(
      inputs(LIVE, { figures: gateFigures({ readLatencyRatio: 2, newErrorRate: 0.001 }) }),
    );
    assert.equal(failedChecks(at), '');
    const over = gateChecks(
      inputs(LIVE, { figures: gateFigures({ readLatencyRatio: 2.01, newErrorRate: 0.002 }) }),
    );
    assert.deepEqual(
      over.filter((check) => !check.ok).map((check) => check.name),
      ['error rate on new', 'read latency new/old'],
    );
    const backlog = gateChecks(inputs(SHADOW, { reconciliation: { ...RECONCILIATION, backlog: 1000 } }));
    assert.equal(backlog.find((check) => check.name === 'reconciliation backlog')!.ok, true);
    const tooMuch = gateChecks(inputs(SHADOW, { reconciliation: { ...RECONCILIATION, backlog: 1001 } }));
    assert.equal(tooMuch.find((check) => check.name === 'reconciliation backlog')!.ok, false);
  });

  it('too few shadow comparisons replace the mismatch check with a failing one', () => {
    const limits = { ...DEFAULT_GATES, minShadowComparisons: 50 };
    const few = inputs(SHADOW, {
      limits,
      figures: gateFigures({ shadowMismatchRate: 0, totals: { shadowCompared: 49 } }),
    });
    assert.equal(
      failedChecks(gateChecks(few)),
      'shadow comparisons: only 49 shadow reads were compared; the gate needs 50',
    );
    const enough = inputs(SHADOW, {
      limits,
      figures: gateFigures({ shadowMismatchRate: 0, totals: { shadowCompared: 50 } }),
    });
    assert.deepEqual(names(enough)[0], 'shadow mismatch rate');
    assert.equal(failedChecks(gateChecks(enough)), '');
  });

  it('verification counts only when clean; a verification never run fails', () => {
    assert.equal(
      failedChecks(gateChecks(inputs(LIVE, { verifiedClean: null }))),
      'last verification clean: no clean verification since dual_write',
    );
    const dirty = gateChecks(inputs(LIVE, { verifiedClean: false })).find(
      (c) => c.name === 'last verification clean',
    )!;
    assert.deepEqual([dirty.value, dirty.ok], [1, false]);
  });

  it('the query ratio is a gate only with a limit and a benchmark, and names the slowest query', () => {
    const benchmark = queryBenchmark({ a: 1.5, b: 2.5 });
    assert.ok(!names(inputs(SHADOW, { queryBenchmark: benchmark })).includes('query p50 ratio new/old'));
    const limits = { ...DEFAULT_GATES, maxQueryRatio: 2 };
    assert.equal(
      failedChecks(gateChecks(inputs(SHADOW, { limits, queryBenchmark: benchmark }))),
      'query p50 ratio new/old: slowest on new: b at 2.50×',
    );
    assert.ok(!names(inputs(SHADOW, { limits })).includes('query p50 ratio new/old'));
  });

  it('reconciliation failures name each table, its error and its tries', () => {
    const failing = [
      {
        table: 'public.a',
        message: 'duplicate key',
        code: '23505',
        since: 0,
        attempts: 4,
        nextTryAt: 0,
        holds: true,
      },
      {
        table: 'public.b',
        message: 'no column x',
        code: '42703',
        since: 0,
        attempts: 2,
        nextTryAt: 0,
        holds: true,
      },
    ];
    assert.equal(
      failedChecks(gateChecks(inputs(SHADOW, { reconciliation: { ...RECONCILIATION, failing } }))),
      'reconciliation failures: public.a: duplicate key (4 tries); public.b: no column x (2 tries)',
    );
  });
});
