// The brake that follows the application's latency (model/latency-throttle.ts): the p99 from router
// latency counts, and AIMD on the copy's row limit (halve above the target, step up well below it,
// lift once back at the rate where trouble began, lift when the application runs nothing), each
// decision with its reason.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  countLatency,
  DEFAULT_LATENCY_TARGET,
  effectiveRowLimit,
  emptyLatencyCounts,
  latencyBrakeSwitchedOff,
  latencyQuantile,
  mergeLatencyCounts,
  nextLatencyThrottle,
  runsQuantile,
  startLatencyThrottle,
  type LatencyReading,
} from '../../model/latency-throttle';
import { statementsSince } from '../../activities/latency-probes';

const probe = (ms: number, applicationSessions = 3): LatencyReading => ({
  routers: null,
  probe: { p99Ms: ms, runs: 100, applicationSessions },
});
const routed = (p99Ms: number, probeMs = 0.3): LatencyReading => ({
  routers: { p99Ms, samples: 500, routers: 2 },
  probe: { p99Ms: probeMs, runs: 100, applicationSessions: 0 },
});

describe('latency counts', () => {
  it('gives the p99 as the upper bound of its bucket, across routers', () => {
    const a = emptyLatencyCounts();
    const b = emptyLatencyCounts();
    for (let i = 0; i < 98; i++) countLatency(a, 0.8);
    countLatency(b, 12);
    countLatency(b, 400);
    const merged = mergeLatencyCounts([a, b]);
    assert.equal(
      merged.reduce((n, c) => n + c, 0),
      100,
    );
    assert.equal(latencyQuantile(merged, 0.5), 1);
    assert.equal(latencyQuantile(merged, 0.99), 15);
    assert.equal(latencyQuantile(merged, 1), 500);
    assert.equal(latencyQuantile(emptyLatencyCounts(), 0.99), null);
    const slow = emptyLatencyCounts();
    countLatency(slow, 60_000);
    assert.equal(latencyQuantile(slow, 0.99), 10_000);
  });
});

describe('the latency brake (AIMD)', () => {
  it('leaves the copy alone while the application stays within its target', () => {
    const state = startLatencyThrottle(DEFAULT_LATENCY_TARGET, routed(4));
    const next = nextLatencyThrottle(state, routed(7.5), 20_000);
    assert.equal(next.limit, null);
    assert.equal(next.decreases, 0);
    assert.equal(next.increases, state.increases);
    assert.deepEqual(next.last, { by: 'routers', ms: 7.5, targetMs: 8 });
  });

  it('cuts from the rate the copy ran at by the overshoot when the p99 passes the target, then cuts the limit', () => {
    let state = startLatencyThrottle(DEFAULT_LATENCY_TARGET, routed(4));
    assert.equal(state.cut, 'by-overshoot');
    assert.equal(state.ceiling, null);
    state = nextLatencyThrottle(state, routed(20), 12_000);
    assert.equal(state.limit, 4800, 'target 8 ms ÷ 20 ms: 0.4 of the rate');
    assert.equal(state.ceiling, 12_000);
    assert.equal(
      state.reason,
      'application p99 20 ms (500 statements through 2 routers) above its target 8 ms (2× baseline 4 ms): copy limited to 4800 rows/s',
    );
    state = nextLatencyThrottle(state, routed(10), 4800);
    assert.equal(state.limit, 2400, 'never less than half');
    assert.equal(state.ceiling, 12_000);
    state = nextLatencyThrottle(state, routed(400), 2400);
    assert.equal(state.limit, 300, 'never more than seven eighths');
    assert.equal(state.decreases, 3);
  });

  it('halves in runs that started before the cut by the overshoot', () => {
    let state = startLatencyThrottle(DEFAULT_LATENCY_TARGET, routed(4), 'half');
    assert.equal(state.cut, undefined);
    state = nextLatencyThrottle(state, routed(400), 12_000);
    assert.equal(state.limit, 6000);
    state = nextLatencyThrottle(state, routed(10), 6000);
    assert.equal(state.limit, 3000);
  });

  it('never limits below the floor rate, so the copy always ends', () => {
    let state = startLatencyThrottle({ ...DEFAULT_LATENCY_TARGET, minRowsPerSecond: 500 }, probe(0.5));
    for (let i = 0; i < 10; i++) state = nextLatencyThrottle(state, probe(50), 800);
    assert.equal(state.limit, 500);
  });

  it('steps up by a tenth of the ceiling after three calm readings in a row, and lifts the limit at the ceiling', () => {
    let state = startLatencyThrottle(DEFAULT_LATENCY_TARGET, routed(4));
    state = nextLatencyThrottle(state, routed(16), 10_000);
    assert.equal(state.limit, 5000);
    // Below the target but not well below: hold.
    assert.equal(nextLatencyThrottle(state, routed(7), 5000).limit, 5000);
    const limits: Array<number | null> = [];
    for (let i = 0; i < 15; i++) {
      state = nextLatencyThrottle(state, routed(4), 5000);
      limits.push(state.limit);
    }
    // A step after every third calm reading in a row.
    assert.deepEqual(limits, [
      5000,
      5000,
      6000,
      6000,
      6000,
      7000,
      7000,
      7000,
      8000,
      8000,
      8000,
      9000,
      9000,
      9000,
      null,
    ]);
    assert.equal(state.ceiling, null);
    assert.match(state.reason ?? '', /within its target 8 ms again: copy limit lifted/);
  });

  it('grows by half at most far below the ceiling, where a tenth of it would leap', () => {
    let state = startLatencyThrottle(DEFAULT_LATENCY_TARGET, routed(4));
    state = nextLatencyThrottle(state, routed(400), 27_000);
    state = nextLatencyThrottle(state, routed(400), null);
    state = nextLatencyThrottle(state, routed(400), null);
    assert.equal(state.limit, 200, 'cut to an eighth three times, down to the floor');
    const limits: Array<number | null> = [];
    for (let i = 0; i < 18; i++) {
      state = nextLatencyThrottle(state, routed(4), null);
      if (state.calm === 0) limits.push(state.limit);
    }
    assert.deepEqual(limits, [400, 600, 900, 1350, 2025, 3038]);
  });

  it('does not rise on one calm reading among bad ones', () => {
    let state = startLatencyThrottle(DEFAULT_LATENCY_TARGET, routed(4));
    state = nextLatencyThrottle(state, routed(16), 10_000);
    for (const ms of [4, 4, 7, 4, 4, 7, 4]) state = nextLatencyThrottle(state, routed(ms), 5000);
    assert.equal(state.limit, 5000, 'never three calm readings in a row');
    assert.equal(state.increases, 0);
  });

  it('goes by the probe when routers do not report, against the probe baseline and the floor', () => {
    let state = startLatencyThrottle(DEFAULT_LATENCY_TARGET, probe(0.4));
    state = nextLatencyThrottle(state, probe(1.9), 5000);
    assert.equal(state.limit, null, 'under the 2 ms floor');
    state = nextLatencyThrottle(state, probe(3), 5000);
    assert.equal(state.limit, 2500);
    assert.deepEqual(state.last, { by: 'probe', ms: 3, targetMs: 2 });
    assert.match(
      state.reason ?? '',
      /^probe query p99 3 ms \(100 runs\) above its target 2 ms \(2× baseline 0.4 ms\)/,
    );
    // Routers that appear later have no baseline: still the probe.
    state = nextLatencyThrottle(state, { ...routed(100), probe: probe(0.3).probe }, 2500);
    assert.equal(state.last?.by, 'probe');
  });

  it('lifts the limit at once when no session of the application ran anything, and does not brake then', () => {
    let state = startLatencyThrottle(DEFAULT_LATENCY_TARGET, probe(0.4));
    state = nextLatencyThrottle(state, probe(4), 8000);
    assert.equal(state.limit, 4000);
    state = nextLatencyThrottle(state, probe(9, 0), 4000);
    assert.equal(state.limit, null, 'the probe feels the copy, but no application waits');
    assert.equal(state.increases, 1);
    assert.deepEqual(state.last, { by: 'probe', ms: 9, targetMs: 2, applicationIdle: true });
    assert.match(
      state.reason ?? '',
      /^no session of the application ran a statement on the source .*: copy limit lifted$/,
    );
    const idle = nextLatencyThrottle(state, probe(30, 0), 20_000);
    assert.equal(idle.limit, null);
    assert.equal(idle.decreases, 1);
    // The application back: the probe counts again.
    assert.equal(nextLatencyThrottle(idle, probe(4), 20_000).limit, 10_000);
    // Routers that report go first, idle probe or not.
    const routedState = startLatencyThrottle(DEFAULT_LATENCY_TARGET, routed(4));
    assert.equal(nextLatencyThrottle(routedState, routed(16), 10_000).limit, 5000);
  });

  it('replays readings of earlier versions (the probe p90 of ten runs)', () => {
    const earlier = (ms: number): LatencyReading => ({ routers: null, probe: { p90Ms: ms } });
    let state = startLatencyThrottle(DEFAULT_LATENCY_TARGET, earlier(0.4));
    assert.equal(state.baseline.probeMs, 0.4);
    state = nextLatencyThrottle(state, earlier(3), 5000);
    assert.equal(state.limit, 2500);
    assert.match(state.reason ?? '', /^probe query p90 3 ms above its target 2 ms/);
  });

  it('takes a quantile of sorted runs by the nearest rank', () => {
    const runs = Array.from({ length: 100 }, (_, i) => i + 1);
    assert.equal(runsQuantile(runs, 0.99), 99);
    assert.equal(runsQuantile(runs.slice(0, 20), 0.99), 20);
    assert.equal(runsQuantile([5], 0.99), 5);
    assert.equal(runsQuantile([], 0.99), 0);
  });

  it('waits for the copy rate before a first limit, since it cuts from it', () => {
    let state = startLatencyThrottle(DEFAULT_LATENCY_TARGET, routed(4));
    state = nextLatencyThrottle(state, routed(16), null);
    assert.equal(state.limit, null, 'no rate to cut from yet');
    assert.equal(state.decreases, 0);
    assert.deepEqual(state.last, { by: 'routers', ms: 16, targetMs: 8 });
    state = nextLatencyThrottle(state, routed(16), 12_000);
    assert.equal(state.limit, 6000);
    // Once limited, a cut needs no rate.
    state = nextLatencyThrottle(state, routed(16), null);
    assert.equal(state.limit, 3000);
    assert.equal(state.ceiling, 12_000);
  });

  it('keeps to the lower of the operator limit and the brake', () => {
    assert.equal(effectiveRowLimit(null, null), null);
    assert.equal(effectiveRowLimit(1000, null), 1000);
    assert.equal(effectiveRowLimit(null, 400), 400);
    assert.equal(effectiveRowLimit(1000, 400), 400);
    assert.equal(effectiveRowLimit(300, 400), 300);
  });

  it('goes by the application statements when they are further above their target than the probe', () => {
    const withStatements = (probeMs: number, meanMs: number, calls = 400): LatencyReading => ({
      ...probe(probeMs),
      statements: { calls, meanMs },
    });
    let state = startLatencyThrottle(DEFAULT_LATENCY_TARGET, withStatements(0.4, 1.5));
    assert.deepEqual(state.baseline, { routersMs: null, probeMs: 0.4, statementsMs: 1.5 });
    // The probe calm, the statements' mean at 2.6× their baseline: the statements cut.
    state = nextLatencyThrottle(state, withStatements(0.5, 3.9), 8000);
    assert.equal(state.limit, 4000);
    assert.deepEqual(state.last, { by: 'statements', ms: 3.9, targetMs: 3 });
    assert.match(
      state.reason ?? '',
      /^application statements mean 3.9 ms \(400 calls, pg_stat_statements\) above its target 3 ms \(2× baseline 1.5 ms\): copy limited to 4000 rows\/s$/,
    );
    // The probe further above its target (×2 against ×1.1): the probe.
    state = nextLatencyThrottle(state, withStatements(4, 3.3), 4000);
    assert.equal(state.last?.by, 'probe');
    // Too few statements to go by: the probe alone.
    assert.equal(nextLatencyThrottle(state, withStatements(0.5, 50, 19), 2000).last?.by, 'probe');
    // Routers with a baseline go first.
    const routedState = startLatencyThrottle(DEFAULT_LATENCY_TARGET, {
      ...routed(4),
      statements: { calls: 400, meanMs: 1 },
    });
    assert.equal(
      nextLatencyThrottle(routedState, { ...routed(5), statements: { calls: 400, meanMs: 30 } }, 9000).last
        ?.by,
      'routers',
    );
  });

  it('has no statements baseline without enough statements, and keeps to the probe in runs that started without one', () => {
    const fewStatements = { ...probe(0.4), statements: { calls: 5, meanMs: 1 } };
    assert.equal(startLatencyThrottle(DEFAULT_LATENCY_TARGET, fewStatements).baseline.statementsMs, null);
    assert.equal(
      startLatencyThrottle(DEFAULT_LATENCY_TARGET, { ...probe(0.4), statements: null }).baseline.statementsMs,
      null,
    );
    // A run that took its baseline before statements were read (its state has no statementsMs).
    const earlier = startLatencyThrottle(DEFAULT_LATENCY_TARGET, probe(0.4));
    const { statementsMs: _, ...baseline } = earlier.baseline;
    const state = nextLatencyThrottle(
      { ...earlier, baseline },
      { ...probe(0.5), statements: { calls: 400, meanMs: 80 } },
      8000,
    );
    assert.equal(state.limit, null);
    assert.deepEqual(state.last, { by: 'probe', ms: 0.5, targetMs: 2 });
  });
});

describe('the latency brake: slow start', () => {
  const large = { estimatedRows: 400_000 };
  const calm = probe(1);
  const started = () => startLatencyThrottle(DEFAULT_LATENCY_TARGET, probe(1), 'by-overshoot', large);

  it('starts a large table slowly while the application is busy, and says why', () => {
    const state = started();
    assert.equal(state.limit, 2000);
    assert.equal(state.slowStart, true);
    assert.equal(state.ceiling, null);
    assert.match(state.reason!, /^slow start: .* ~400000 rows, so the copy starts at 2000 rows\/s/);
    const routedStart = startLatencyThrottle(DEFAULT_LATENCY_TARGET, routed(4), 'by-overshoot', large);
    assert.equal(routedStart.limit, 2000, 'busy through routers');
  });

  it('starts at full speed a small table, an idle application, a run without it, or when switched off', () => {
    const full = [
      startLatencyThrottle(DEFAULT_LATENCY_TARGET, probe(1), 'by-overshoot', { estimatedRows: 99_999 }),
      startLatencyThrottle(DEFAULT_LATENCY_TARGET, probe(1, 0), 'by-overshoot', large),
      startLatencyThrottle(DEFAULT_LATENCY_TARGET, probe(1)),
      startLatencyThrottle(
        { ...DEFAULT_LATENCY_TARGET, startRowsPerSecond: null },
        probe(1),
        'by-overshoot',
        large,
      ),
    ];
    for (const state of full) {
      assert.equal(state.limit, null);
      assert.equal(state.slowStart, undefined);
      assert.equal(state.reason, null);
    }
    const floor = { ...DEFAULT_LATENCY_TARGET, startRowsPerSecond: 50, minRowsPerSecond: 300 };
    assert.equal(startLatencyThrottle(floor, probe(1), 'by-overshoot', large).limit, 300);
  });

  it('doubles the limit at each calm reading, and holds it at a reading near the target', () => {
    let state = started();
    state = nextLatencyThrottle(state, calm, null);
    assert.equal(state.limit, 4000);
    state = nextLatencyThrottle(state, calm, 3900);
    assert.equal(state.limit, 8000);
    assert.match(state.reason!, /below its target 2 ms: slow start, copy limit doubled to 8000 rows\/s$/);
    const held = nextLatencyThrottle(state, probe(1.9), 7800);
    assert.equal(held.limit, 8000);
    assert.equal(held.slowStart, true);
    assert.equal(held.increases, state.increases);
  });

  it('ends at the first reading above the target: cut from the limit, which rises past that ceiling afterwards', () => {
    let state = started();
    state = nextLatencyThrottle(state, calm, null);
    state = nextLatencyThrottle(state, calm, 3950);
    state = nextLatencyThrottle(state, probe(4), 7900);
    assert.equal(state.limit, 4000, 'halved from the limit: target 2 ms ÷ 4 ms');
    assert.equal(state.ceiling, 8000);
    assert.equal(state.slowStart, false);
    assert.equal(state.decreases, 1);
    for (let i = 0; i < 30; i++) state = nextLatencyThrottle(state, calm, state.limit);
    assert.ok(state.limit !== null && state.limit > 8000, `rose past the ceiling: ${state.limit}`);
    const limit = state.limit;
    const lifted = nextLatencyThrottle(
      nextLatencyThrottle(nextLatencyThrottle(state, calm, 1000), calm, 1000),
      calm,
      1000,
    );
    assert.equal(lifted.limit, null, 'the copy cannot use the limit');
    assert.equal(lifted.slowStart, undefined);
    assert.match(
      lifted.reason!,
      new RegExp(`runs at 1000 rows/s, far below its limit of ${limit} rows/s: copy limit lifted$`),
    );
  });

  it('keeps a limit at or below the start rate however little the copy reports (chunks of a thousand rows)', () => {
    let state = nextLatencyThrottle(started(), probe(40), 1900);
    assert.equal(state.limit, 250, 'an eighth of 2000');
    for (let i = 0; i < 3; i++) state = nextLatencyThrottle(state, calm, 20);
    assert.equal(state.limit, 450, 'raised a step, not lifted: 20 rows/s is a chunk now and then');
  });

  it('lifts the limit when the copy cannot use it, but not at the start rate (first batches are small)', () => {
    let state = started();
    state = nextLatencyThrottle(state, calm, 100);
    assert.equal(state.limit, 4000, 'at the start rate: doubled, not lifted');
    state = nextLatencyThrottle(state, calm, 900);
    assert.equal(state.limit, null);
    assert.equal(state.slowStart, undefined);
    assert.match(
      state.reason!,
      /the copy runs at 900 rows\/s, far below its limit of 4000 rows\/s: copy limit lifted$/,
    );
  });

  it('leaves no slow start behind when an operator switches the brake off', () => {
    const off = latencyBrakeSwitchedOff(nextLatencyThrottle(started(), calm, null));
    assert.equal(off.limit, null);
    assert.equal(off.slowStart, undefined);
    assert.equal(off.reason, 'the latency brake was switched off by an operator');
    // Switched on again, a reading above the target cuts from the copy's rate, and the limit is
    // lifted once back at that rate, as for a copy that started at full speed.
    let state = nextLatencyThrottle(off, probe(4), 30_000);
    assert.equal(state.ceiling, 30_000);
    for (let i = 0; i < 60 && state.limit !== null; i++)
      state = nextLatencyThrottle(state, calm, state.limit);
    assert.equal(state.limit, null);
  });

  it('lifts the limit when the application goes idle, and starts AIMD afresh after', () => {
    let state = started();
    state = nextLatencyThrottle(state, probe(1, 0), 1900);
    assert.equal(state.limit, null);
    assert.equal(state.slowStart, undefined);
    state = nextLatencyThrottle(state, probe(4), 30_000);
    assert.equal(state.limit, 15_000);
    assert.equal(state.ceiling, 30_000);
    for (let i = 0; i < 60 && state.limit !== null; i++)
      state = nextLatencyThrottle(state, calm, state.limit);
    assert.equal(state.limit, null, 'lifted at the ceiling, as a copy that started at full speed');
  });
});

describe('the application statements over a window (pg_stat_statements)', () => {
  const counts = [
    { at: 1000, calls: 100, totalMs: 50 },
    { at: 2000, calls: 300, totalMs: 150 },
    { at: 3000, calls: 500, totalMs: 650 },
    { at: 4000, calls: 600, totalMs: 750 },
  ];

  it('takes the difference from the last count at or before the window start to the last count', () => {
    assert.deepEqual(statementsSince(counts, 2500), { calls: 300, meanMs: 2 });
    assert.deepEqual(statementsSince(counts, 2000), { calls: 300, meanMs: 2 });
    // A window longer than the counts: from the first.
    assert.deepEqual(statementsSince(counts, 0), { calls: 500, meanMs: 1.4 });
    // No statements ran: none to take a mean of.
    assert.deepEqual(statementsSince([...counts, { at: 5000, calls: 600, totalMs: 750 }], 4500), {
      calls: 0,
      meanMs: 0,
    });
  });

  it('cannot tell from fewer than two counts, or across a reset of the counters', () => {
    assert.equal(statementsSince([], 0), null);
    assert.equal(statementsSince(counts.slice(0, 1), 0), null);
    assert.equal(statementsSince(counts, 4000), null, 'the window starts at the last count');
    assert.equal(statementsSince([...counts, { at: 5000, calls: 20, totalMs: 10 }], 2500), null);
    // A reset before the window start does not matter.
    assert.deepEqual(statementsSince([{ at: 0, calls: 900, totalMs: 900 }, ...counts], 2500), {
      calls: 300,
      meanMs: 2,
    });
  });
});
