// The copy's brake that follows the application (issue 12): before a table's copy starts, the
// application's latency is measured as its baseline; while it copies, the latency is read again every
// few seconds and the copy's row limit is set by additive increase, multiplicative decrease (AIMD):
// halved while the application's p99 is above its target (a ratio of the baseline), raised step by
// step once it has stayed well below for CALM_READINGS readings in a row (one good reading among bad
// ones is noise, not room), and lifted once it is back where the trouble began. Two readings: what
// the routers measured for the application's own statements (reads, writes and their mirrors) over
// their last heartbeat, and a probe query on the source the operator may choose (for applications
// that write without a router). Each compares with its own baseline. Plain data and pure functions:
// the backfill workflow keeps the state, an activity takes the readings.

/** Upper bounds, in ms, of the latency buckets routers count the application's statements into. */
export const APP_LATENCY_BUCKETS_MS = [
  0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000,
];

/** The application's statements by latency bucket (APP_LATENCY_BUCKETS_MS, then one above them). */
export type LatencyCounts = number[];

export function emptyLatencyCounts(): LatencyCounts {
  return new Array<number>(APP_LATENCY_BUCKETS_MS.length + 1).fill(0);
}

/** Counts one statement of `ms` into `counts`. */
export function countLatency(counts: LatencyCounts, ms: number): void {
  let i = 0;
  while (i < APP_LATENCY_BUCKETS_MS.length && ms > APP_LATENCY_BUCKETS_MS[i]!) i++;
  counts[i] = (counts[i] ?? 0) + 1;
}

/** Adds several routers' counts. */
export function mergeLatencyCounts(all: LatencyCounts[]): LatencyCounts {
  const merged = emptyLatencyCounts();
  for (const counts of all) counts.forEach((n, i) => (merged[i] = (merged[i] ?? 0) + n));
  return merged;
}

/** The `quantile` (0–1) of the counted statements, as its bucket's upper bound in ms; null when none. */
export function latencyQuantile(counts: LatencyCounts, quantile: number): number | null {
  const total = counts.reduce((sum, n) => sum + n, 0);
  if (total === 0) return null;
  const rank = Math.ceil(total * quantile);
  let seen = 0;
  for (let i = 0; i < counts.length; i++) {
    seen += counts[i] ?? 0;
    if (seen >= rank) return APP_LATENCY_BUCKETS_MS[i] ?? APP_LATENCY_BUCKETS_MS.at(-1)! * 2;
  }
  return APP_LATENCY_BUCKETS_MS.at(-1)! * 2;
}

/** The operator's settings (config `throttle.latencyTarget`; null switches the brake off). */
export interface LatencyTarget {
  /** The application's p99 may be at most this many times its baseline (default 2). */
  ratio: number;
  /** ... and never has to be below this many ms (default 2): tiny baselines are mostly noise. */
  floorMs: number;
  /** How often the latency is read while copying, in ms (default 5000, a router heartbeat). */
  intervalMs: number;
  /** The limit never goes below this many rows/s (default 200): the copy always ends. */
  minRowsPerSecond: number;
  /** Run on the source and timed when no router reports (default SELECT 1; one SELECT, read only). */
  probeQuery: string;
  /** Router readings with fewer statements than this are not used (default 20). */
  minSamples: number;
}

/** Readings in a row well below the target before the limit rises a step. */
export const CALM_READINGS = 3;

export const DEFAULT_LATENCY_TARGET: LatencyTarget = {
  ratio: 2,
  floorMs: 2,
  intervalMs: 5000,
  minRowsPerSecond: 200,
  probeQuery: 'SELECT 1',
  minSamples: 20,
};

/** How many times a reading runs the probe query; it goes by the 90th percentile of the runs. */
export const PROBE_RUNS = 10;

/** One reading: the routers' p99 (null when too few statements) and the probe query's p90. */
export interface LatencyReading {
  routers: { p99Ms: number; samples: number; routers: number } | null;
  probe: { p90Ms: number };
}

export interface LatencyThrottleState {
  target: LatencyTarget;
  baseline: { routersMs: number | null; probeMs: number };
  /** The row limit this brake sets now, rows/s for the table; null = it does not limit. */
  limit: number | null;
  /** The rate the copy ran at when the brake last came on: reaching it again lifts the limit. */
  ceiling: number | null;
  /** The latest reading it went by: which one, its latency and the target it was held to. */
  last: { by: 'routers' | 'probe'; ms: number; targetMs: number } | null;
  /** Why the limit is what it is, in the operator's words; null before the first decision. */
  reason: string | null;
  decreases: number;
  increases: number;
  /** Readings in a row well below the target since the last change (absent in earlier runs: 0). */
  calm?: number;
}

export function startLatencyThrottle(target: LatencyTarget, baseline: LatencyReading): LatencyThrottleState {
  return {
    target,
    baseline: { routersMs: baseline.routers?.p99Ms ?? null, probeMs: baseline.probe.p90Ms },
    limit: null,
    ceiling: null,
    last: null,
    reason: null,
    decreases: 0,
    increases: 0,
  };
}

const round = (ms: number) => Math.round(ms * 100) / 100;

/**
 * The next state after a reading, given the rows/s the copy ran at since the last one. Routers'
 * readings are preferred when there is a router baseline to compare with.
 */
export function nextLatencyThrottle(
  state: LatencyThrottleState,
  reading: LatencyReading,
  copiedRowsPerSecond: number,
): LatencyThrottleState {
  const { target } = state;
  const byRouters = reading.routers !== null && state.baseline.routersMs !== null;
  const by = byRouters ? 'routers' : 'probe';
  const ms = byRouters ? reading.routers!.p99Ms : reading.probe.p90Ms;
  const baselineMs = byRouters ? state.baseline.routersMs! : state.baseline.probeMs;
  const targetMs = round(Math.max(baselineMs * target.ratio, target.floorMs));
  const measured = byRouters
    ? `application p99 ${round(ms)} ms (${reading.routers!.samples} statements through ${reading.routers!.routers} routers)`
    : `probe query p90 ${round(ms)} ms`;
  const next = { ...state, last: { by, ms, targetMs } } satisfies LatencyThrottleState;
  if (ms > targetMs) {
    const from = state.limit ?? Math.max(Math.round(copiedRowsPerSecond), target.minRowsPerSecond);
    const limit = Math.max(target.minRowsPerSecond, Math.floor(from / 2));
    return {
      ...next,
      limit,
      ceiling: state.limit === null ? from : (state.ceiling ?? from),
      decreases: state.decreases + 1,
      calm: 0,
      reason: `${measured} above its target ${targetMs} ms (${target.ratio}× baseline ${round(baselineMs)} ms): copy limited to ${limit} rows/s`,
    };
  }
  if (state.limit === null || ms > targetMs * 0.8) return { ...next, calm: 0 };
  const calm = (state.calm ?? 0) + 1;
  if (calm < CALM_READINGS) return { ...next, calm };
  const step = Math.max(target.minRowsPerSecond, Math.round((state.ceiling ?? state.limit) / 10));
  const raised = state.limit + step;
  if (state.ceiling === null || raised >= state.ceiling) {
    return {
      ...next,
      limit: null,
      ceiling: null,
      increases: state.increases + 1,
      calm: 0,
      reason: `${measured} within its target ${targetMs} ms again: copy limit lifted`,
    };
  }
  return {
    ...next,
    limit: raised,
    increases: state.increases + 1,
    calm: 0,
    reason: `${measured} below its target ${targetMs} ms: copy limit raised to ${raised} rows/s`,
  };
}

/** The limit the copy keeps: the lower of the operator's and the brake's (null = none). */
export function effectiveRowLimit(operator: number | null, brake: number | null): number | null {
  if (operator === null) return brake;
  if (brake === null) return operator;
  return Math.min(operator, brake);
}
