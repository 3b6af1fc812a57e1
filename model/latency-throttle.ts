// The copy's brake that follows the application (issue 12): before a table's copy starts, the
// application's latency is measured as its baseline; while it copies, the latency is read again every
// few seconds and the copy's row limit is set by additive increase, multiplicative decrease (AIMD):
// cut while the application's p99 is above its target (a ratio of the baseline), by as much as it is
// above (target ÷ reading, from a half to an eighth), raised step by step once it has stayed well
// below for CALM_READINGS readings in a row (one good reading among bad ones is noise, not room; a
// step is a tenth of the rate where the trouble began, at most half the limit), and lifted once it
// is back there. Two readings: what
// the routers measured for the application's own statements (reads, writes and their mirrors) over
// their last heartbeat, and, for applications that write without a router, the p99 of a probe query
// the operator may choose, run on the source in the background over the same seconds. Each compares
// with its own baseline. The probe feels the copy whether or not the application runs anything, so it
// only counts while some session of the application ran a statement on the source in those seconds:
// an idle application lifts the limit, and the copy runs at full speed. Where the source has
// pg_stat_statements, a third reading: the mean time of the application's own statements over the
// same seconds (every role's but the migration's); without routers, the brake goes by whichever of
// the probe and the statements is further above its target. A large table whose application is
// busy starts slowly (as TCP's slow start): at a low limit doubled at each calm reading, so the copy
// never hits the application at full speed before a first reading. Plain data and pure functions:
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
  /**
   * Run on the source every few tens of ms and timed, for when no router reports (default SELECT 1;
   * one SELECT, read only).
   */
  probeQuery: string;
  /** Router readings with fewer statements than this are not used (default 20). */
  minSamples: number;
  /**
   * Slow start: a table of at least `slowStartMinRows` rows whose application is busy at the
   * baseline starts copying at this many rows/s, doubled at each reading within the target (default
   * 2000; null: every copy starts at full speed). Absent in runs that started before it.
   */
  startRowsPerSecond?: number | null;
  /** Tables under this many rows (the planner's estimate) start at full speed (default 100,000). */
  slowStartMinRows?: number;
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
  startRowsPerSecond: 2000,
  slowStartMinRows: 100_000,
};

/** The probe over a reading's window: its p99, its runs, and the application sessions that ran a statement. */
export interface ProbeReading {
  p99Ms: number;
  runs: number;
  /** Sessions on the source, other than the migration's, that ran a statement in the window. */
  applicationSessions: number;
}

/** What readings of earlier versions carried: the p90 of ten runs back to back (their histories replay). */
interface EarlierProbeReading {
  p90Ms: number;
}

/** The application's statements over a reading's window, from pg_stat_statements. */
export interface StatementsReading {
  calls: number;
  meanMs: number;
}

/**
 * One reading: the routers' p99 (null when too few statements), the probe query's, and the
 * application's statements (null when pg_stat_statements cannot tell; absent from readings of
 * earlier versions, whose histories replay).
 */
export interface LatencyReading {
  routers: { p99Ms: number; samples: number; routers: number } | null;
  probe: ProbeReading | EarlierProbeReading;
  statements?: StatementsReading | null;
}

function probeMs(probe: LatencyReading['probe']): number {
  return 'p99Ms' in probe ? probe.p99Ms : probe.p90Ms;
}

/** The `quantile` (0–1) of `runs`, sorted fastest first (the nearest rank). */
export function runsQuantile(runs: readonly number[], quantile: number): number {
  return runs[Math.max(0, Math.ceil(runs.length * quantile) - 1)] ?? 0;
}

/** What a decision went by: the routers' p99, the probe query's p99, or the statements' mean. */
export type LatencySignal = 'routers' | 'probe' | 'statements';

export interface LatencyThrottleState {
  target: LatencyTarget;
  /**
   * The baselines; `statementsMs` null when the baseline reading had too few of the application's
   * statements (or none could be counted), absent in runs that started before it was read.
   */
  baseline: { routersMs: number | null; probeMs: number; statementsMs?: number | null };
  /** The row limit this brake sets now, rows/s for the table; null = it does not limit. */
  limit: number | null;
  /** The rate the copy ran at when the brake last came on: reaching it again lifts the limit. */
  ceiling: number | null;
  /**
   * The latest reading it went by: which one, its latency and the target it was held to;
   * `applicationIdle` when no session of the application ran a statement (the probe did not count).
   */
  last: { by: LatencySignal; ms: number; targetMs: number; applicationIdle?: boolean } | null;
  /** Why the limit is what it is, in the operator's words; null before the first decision. */
  reason: string | null;
  decreases: number;
  increases: number;
  /** Readings in a row well below the target since the last change (absent in earlier runs: 0). */
  calm?: number;
  /**
   * How far a reading above the target cuts the limit: by the overshoot (target ÷ reading, between
   * an eighth and a half), or by half (runs that started before: absent).
   */
  cut?: 'by-overshoot' | 'half';
  /**
   * True while the copy starts slowly: its limit doubles at each reading well within the target,
   * until a reading above it cuts it, or an idle application or a copy that cannot use the limit
   * lifts it. False after that cut: AIMD as usual, except that the ceiling is the limit where
   * trouble began, so the limit rises past it and goes only once the copy cannot use it. Absent
   * when the copy started at full speed, and after a lift.
   */
  slowStart?: boolean;
}

/** A reading above the target cuts the limit at least to half, and at most to an eighth. */
export const MIN_CUT = 0.125;

/**
 * The brake before the first row moves. `table` (the table's estimated rows; absent in runs that
 * started before slow start) lets a large table whose application is busy start slowly: a copy at
 * full speed hurts the application most in its first seconds, before any reading can cut it (a
 * first reading that missed that moment left a copy at 41,900 rows/s uncut).
 */
export function startLatencyThrottle(
  target: LatencyTarget,
  baseline: LatencyReading,
  cut: 'by-overshoot' | 'half' = 'by-overshoot',
  table?: { estimatedRows: number },
): LatencyThrottleState {
  const state: LatencyThrottleState = {
    ...(cut === 'by-overshoot' && { cut }),
    target,
    baseline: {
      routersMs: baseline.routers?.p99Ms ?? null,
      probeMs: probeMs(baseline.probe),
      statementsMs: usableStatements(baseline, target)?.meanMs ?? null,
    },
    limit: null,
    ceiling: null,
    last: null,
    reason: null,
    decreases: 0,
    increases: 0,
  };
  const limit = slowStartRate(target);
  const minRows = target.slowStartMinRows ?? DEFAULT_LATENCY_TARGET.slowStartMinRows!;
  if (table === undefined || limit === null || table.estimatedRows < minRows) return state;
  if (!applicationBusy(baseline, target)) return state;
  return {
    ...state,
    limit,
    slowStart: true,
    reason: `slow start: the application is busy and the table has ~${table.estimatedRows} rows, so the copy starts at ${limit} rows/s and doubles at each reading within the target`,
  };
}

/** Whether the application ran statements in a reading's window (through routers, or on the source). */
function applicationBusy(reading: LatencyReading, target: LatencyTarget): boolean {
  const { probe } = reading;
  return (
    reading.routers !== null ||
    usableStatements(reading, target) !== null ||
    ('applicationSessions' in probe && probe.applicationSessions > 0)
  );
}

/** The rows/s a slow start begins at (never below the brake's floor); null when copies start at full speed. */
function slowStartRate(target: LatencyTarget): number | null {
  const start = target.startRowsPerSecond ?? null;
  return start === null ? null : Math.max(target.minRowsPerSecond, Math.round(start));
}

/** Below this share of its limit, a copy that started slowly is held back by something else: the limit goes. */
const SLOW_START_UNUSED = 0.25;

const round = (ms: number) => Math.round(ms * 100) / 100;

/** The reading's statements, when there are at least `minSamples` of them. */
function usableStatements(reading: LatencyReading, target: LatencyTarget): StatementsReading | null {
  const { statements } = reading;
  return statements != null && statements.calls >= target.minSamples ? statements : null;
}

/** One signal of a reading against its target: what it measured, in the operator's words. */
interface Signal {
  by: LatencySignal;
  ms: number;
  baselineMs: number;
  targetMs: number;
  measured: string;
}

function signalOf(
  by: LatencySignal,
  ms: number,
  baselineMs: number,
  target: LatencyTarget,
  measured: string,
): Signal {
  return {
    by,
    ms,
    baselineMs,
    targetMs: round(Math.max(baselineMs * target.ratio, target.floorMs)),
    measured,
  };
}

/** The probe's reading against its target. */
function probeSignal(state: LatencyThrottleState, reading: LatencyReading): Signal {
  const { probe } = reading;
  const ms = probeMs(probe);
  const measured =
    'p99Ms' in probe
      ? `probe query p99 ${round(ms)} ms (${probe.runs} runs)`
      : `probe query p90 ${round(ms)} ms`;
  return signalOf('probe', ms, state.baseline.probeMs, state.target, measured);
}

/**
 * The signal a reading is judged by: the routers' when they have a baseline and a reading; else the
 * probe's, or the application's statements' when they are further above their target.
 */
function signalToFollow(state: LatencyThrottleState, reading: LatencyReading): Signal {
  const { target, baseline } = state;
  if (reading.routers !== null && baseline.routersMs !== null) {
    const { p99Ms, samples, routers } = reading.routers;
    return signalOf(
      'routers',
      p99Ms,
      baseline.routersMs,
      target,
      `application p99 ${round(p99Ms)} ms (${samples} statements through ${routers} routers)`,
    );
  }
  const byProbe = probeSignal(state, reading);
  const statements = usableStatements(reading, target);
  if (statements === null || baseline.statementsMs == null) return byProbe;
  const byStatements = signalOf(
    'statements',
    statements.meanMs,
    baseline.statementsMs,
    target,
    `application statements mean ${round(statements.meanMs)} ms (${statements.calls} calls, pg_stat_statements)`,
  );
  return byStatements.ms / byStatements.targetMs > byProbe.ms / byProbe.targetMs ? byStatements : byProbe;
}

/**
 * The next state after a reading, given the rows/s the copy runs at (null while it is not known yet:
 * a first limit waits for it, since it halves from that rate). Routers' readings are preferred when
 * there is a router baseline to compare with.
 */
export function nextLatencyThrottle(
  state: LatencyThrottleState,
  reading: LatencyReading,
  copiedRowsPerSecond: number | null,
): LatencyThrottleState {
  const { target } = state;
  const { by, ms, baselineMs, targetMs, measured } = signalToFollow(state, reading);
  const { probe } = reading;
  if (by !== 'routers' && 'applicationSessions' in probe && probe.applicationSessions === 0) {
    const byProbe = probeSignal(state, reading);
    const last = { by: 'probe' as const, ms: byProbe.ms, targetMs: byProbe.targetMs, applicationIdle: true };
    if (state.limit === null) return { ...state, last, calm: 0 };
    return {
      ...withoutSlowStart(state),
      last,
      limit: null,
      ceiling: null,
      increases: state.increases + 1,
      calm: 0,
      reason: `no session of the application ran a statement on the source (probe query p99 ${round(byProbe.ms)} ms): copy limit lifted`,
    };
  }
  const next = { ...state, last: { by, ms, targetMs } } satisfies LatencyThrottleState;
  if (ms > targetMs) {
    if (state.limit === null && copiedRowsPerSecond === null) return { ...next, calm: 0 };
    const from = state.limit ?? Math.max(Math.round(copiedRowsPerSecond!), target.minRowsPerSecond);
    // Far above its target, the copy must give up more than half at once: halving every interval
    // took four readings (20 s) to bring a copy at 45,000 rows/s to where the application was fine.
    const cut = state.cut === 'by-overshoot' ? Math.max(MIN_CUT, Math.min(0.5, targetMs / ms)) : 0.5;
    const limit = Math.max(target.minRowsPerSecond, Math.floor(from * cut));
    return {
      ...next,
      ...endSlowStart(state),
      limit,
      ceiling: state.limit === null ? from : (state.ceiling ?? from),
      decreases: state.decreases + 1,
      calm: 0,
      reason: `${measured} above its target ${targetMs} ms (${target.ratio}× baseline ${round(baselineMs)} ms): copy limited to ${limit} rows/s`,
    };
  }
  if (state.limit === null || ms > targetMs * 0.8) return { ...next, calm: 0 };
  if (state.slowStart === true) return slowStartStep(next, measured, targetMs, copiedRowsPerSecond);
  const calm = (state.calm ?? 0) + 1;
  if (calm < CALM_READINGS) return { ...next, calm };
  const tenth = Math.round((state.ceiling ?? state.limit) / 10);
  // Far below the ceiling, a tenth of it is a leap: from 200 rows/s, a step of 2,700 overshot
  // at once, and the next reading cut the copy back to the floor. There it grows by half at most.
  const step = Math.max(
    target.minRowsPerSecond,
    state.cut === 'by-overshoot' ? Math.min(tenth, Math.round(state.limit / 2)) : tenth,
  );
  const raised = state.limit + step;
  // After a slow start the ceiling is the limit where trouble began, not the copy's full rate: the
  // limit goes on rising past it, and goes once the copy cannot use it.
  if (state.slowStart === false) {
    if (copyFarBelow(copiedRowsPerSecond, state.limit, target))
      return liftUnused(next, measured, targetMs, copiedRowsPerSecond!);
  } else if (state.ceiling === null || raised >= state.ceiling) {
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

/**
 * Whether the copy runs far below its limit (something else holds it back); false when not known,
 * and at the start rate or below: there the partitions' first small batches, or chunks of a
 * thousand rows shared by partitions at a few hundred rows/s, report less than the copy can do.
 */
function copyFarBelow(copiedRowsPerSecond: number | null, limit: number, target: LatencyTarget): boolean {
  const start = slowStartRate(target) ?? target.minRowsPerSecond;
  return (
    limit > start &&
    copiedRowsPerSecond !== null &&
    copiedRowsPerSecond > 0 &&
    copiedRowsPerSecond < limit * SLOW_START_UNUSED
  );
}

/** Lifts a limit the copy cannot use. */
function liftUnused(
  state: LatencyThrottleState,
  measured: string,
  targetMs: number,
  copiedRowsPerSecond: number,
): LatencyThrottleState {
  return {
    ...withoutSlowStart(state),
    limit: null,
    ceiling: null,
    increases: state.increases + 1,
    calm: 0,
    reason: `${measured} within its target ${targetMs} ms, and the copy runs at ${Math.round(copiedRowsPerSecond)} rows/s, far below its limit of ${state.limit} rows/s: copy limit lifted`,
  };
}

/**
 * A cut ends a slow start with `slowStart: false`: its ceiling is then the limit where trouble began,
 * not the copy's full rate. Nothing otherwise.
 */
function endSlowStart(state: LatencyThrottleState): { slowStart?: boolean } {
  return state.slowStart === true ? { slowStart: false } : {};
}

/** The state as a copy with no slow start behind it: a lifted limit starts AIMD afresh. */
function withoutSlowStart(state: LatencyThrottleState): LatencyThrottleState {
  const { slowStart: _ended, ...rest } = state;
  return rest;
}

/**
 * A reading well within the target while the copy starts slowly: the limit doubles, unless the copy
 * already runs far below it (its chunks, the operator's row limit or the source hold it back), when
 * the limit is lifted and the copy goes on as any other. Not at the start rate: the partitions' first
 * small batches report less than the copy can do.
 */
function slowStartStep(
  state: LatencyThrottleState,
  measured: string,
  targetMs: number,
  copiedRowsPerSecond: number | null,
): LatencyThrottleState {
  const limit = state.limit!;
  if (copyFarBelow(copiedRowsPerSecond, limit, state.target)) {
    return liftUnused(state, measured, targetMs, copiedRowsPerSecond!);
  }
  const doubled = limit * 2;
  return {
    ...state,
    limit: doubled,
    increases: state.increases + 1,
    calm: 0,
    reason: `${measured} below its target ${targetMs} ms: slow start, copy limit doubled to ${doubled} rows/s`,
  };
}

/**
 * The brake an operator switched off (`migrate throttle --latency-target off`): no limit, and no slow
 * start left to resume when it is switched on again.
 */
export function latencyBrakeSwitchedOff(state: LatencyThrottleState): LatencyThrottleState {
  return {
    ...withoutSlowStart(state),
    limit: null,
    ceiling: null,
    reason: 'the latency brake was switched off by an operator',
  };
}

/** The limit the copy keeps: the lower of the operator's and the brake's (null = none). */
export function effectiveRowLimit(operator: number | null, brake: number | null): number | null {
  if (operator === null) return brake;
  if (brake === null) return operator;
  return Math.min(operator, brake);
}
