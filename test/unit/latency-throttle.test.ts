// The brake that follows the application's latency (model/latency-throttle.ts): the p99 from router
// latency counts, and AIMD on the copy's row limit (halve above the target, step up well below it,
// lift once back at the rate where trouble began), each decision with its reason.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  countLatency,
  DEFAULT_LATENCY_TARGET,
  effectiveRowLimit,
  emptyLatencyCounts,
  latencyQuantile,
  mergeLatencyCounts,
  nextLatencyThrottle,
  startLatencyThrottle,
  type LatencyReading,
} from '../../model/latency-throttle';

const probe = (ms: number): LatencyReading => ({ routers: null, probe: { p90Ms: ms } });
const routed = (p99Ms: number, probeMs = 0.3): LatencyReading => ({
  routers: { p99Ms, samples: 500, routers: 2 },
  probe: { p90Ms: probeMs },
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
    assert.equal(next.reason, null);
    assert.deepEqual(next.last, { by: 'routers', ms: 7.5, targetMs: 8 });
  });

  it('halves from the rate the copy ran at when the p99 passes the target, then halves the limit', () => {
    let state = startLatencyThrottle(DEFAULT_LATENCY_TARGET, routed(4));
    state = nextLatencyThrottle(state, routed(20), 12_000);
    assert.equal(state.limit, 6000);
    assert.equal(state.ceiling, 12_000);
    assert.equal(
      state.reason,
      'application p99 20 ms (500 statements through 2 routers) above its target 8 ms (2× baseline 4 ms): copy limited to 6000 rows/s',
    );
    state = nextLatencyThrottle(state, routed(10), 6000);
    assert.equal(state.limit, 3000);
    assert.equal(state.ceiling, 12_000);
    assert.equal(state.decreases, 2);
  });

  it('never limits below the floor rate, so the copy always ends', () => {
    let state = startLatencyThrottle({ ...DEFAULT_LATENCY_TARGET, minRowsPerSecond: 500 }, probe(0.5));
    for (let i = 0; i < 10; i++) state = nextLatencyThrottle(state, probe(50), 800);
    assert.equal(state.limit, 500);
  });

  it('steps up by a tenth of the ceiling after three calm readings in a row, and lifts the limit at the ceiling', () => {
    let state = startLatencyThrottle(DEFAULT_LATENCY_TARGET, routed(4));
    state = nextLatencyThrottle(state, routed(20), 10_000);
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

  it('does not rise on one calm reading among bad ones', () => {
    let state = startLatencyThrottle(DEFAULT_LATENCY_TARGET, routed(4));
    state = nextLatencyThrottle(state, routed(20), 10_000);
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
    assert.match(state.reason ?? '', /^probe query p90 3 ms above its target 2 ms \(2× baseline 0.4 ms\)/);
    // Routers that appear later have no baseline: still the probe.
    state = nextLatencyThrottle(state, routed(100, 0.3), 2500);
    assert.equal(state.last?.by, 'probe');
  });

  it('keeps to the lower of the operator limit and the brake', () => {
    assert.equal(effectiveRowLimit(null, null), null);
    assert.equal(effectiveRowLimit(1000, null), 1000);
    assert.equal(effectiveRowLimit(null, 400), 400);
    assert.equal(effectiveRowLimit(1000, 400), 400);
    assert.equal(effectiveRowLimit(300, 400), 300);
  });
});
