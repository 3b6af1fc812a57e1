// What a router tells the migration about itself for the read ramp's gates: counters since it
// started (reads and their total time per side, reads on new that failed, shadow comparisons and
// mismatches; the latency of the application's statements since the previous heartbeat), published
// with every heartbeat. The migration sums the change over a soak window
// across every live router; a router that restarted mid-window counts from zero.

import type { LatencyCounts } from './latency-throttle';

export interface RouterStats {
  /** Reads the application made, and their total time in seconds, per side. */
  readsOld: number;
  readSecondsOld: number;
  readsNew: number;
  readSecondsNew: number;
  /** Reads on new that failed (and were answered by old). */
  readsNewFailed: number;
  shadowCompared: number;
  shadowMismatched: number;
  /**
   * The application's statements (reads, writes and their mirrors) by latency bucket since the
   * router's previous heartbeat (latency-throttle.ts): what the copy's brake reads. Absent from
   * routers of earlier versions.
   */
  latency?: LatencyCounts;
}

export const NO_STATS: Required<Omit<RouterStats, 'latency'>> = {
  readsOld: 0,
  readSecondsOld: 0,
  readsNew: 0,
  readSecondsNew: 0,
  readsNewFailed: 0,
  shadowCompared: 0,
  shadowMismatched: 0,
};

const FIELDS = Object.keys(NO_STATS) as Array<Exclude<keyof RouterStats, 'latency'>>;

export interface GateFigures {
  totals: RouterStats;
  /** Mismatched / compared shadow reads; null without comparisons. */
  shadowMismatchRate: number | null;
  /** Failed / all reads on new; null without reads on new. */
  newErrorRate: number | null;
  /** Mean read time on new / on old; null without reads on both. */
  readLatencyRatio: number | null;
}

/** The change of each router's counters since `baseline`; a router whose counters fell restarted. */
export function statsSince(
  current: Record<string, RouterStats>,
  baseline: Record<string, RouterStats> = {},
): GateFigures {
  const totals = { ...NO_STATS };
  for (const [routerId, now] of Object.entries(current)) {
    const before = baseline[routerId];
    const restarted = before === undefined || FIELDS.some((field) => now[field] < before[field]);
    for (const field of FIELDS) totals[field] += restarted ? now[field] : now[field] - before[field];
  }
  const meanOld = totals.readsOld > 0 ? totals.readSecondsOld / totals.readsOld : null;
  const meanNew = totals.readsNew > 0 ? totals.readSecondsNew / totals.readsNew : null;
  return {
    totals,
    shadowMismatchRate: totals.shadowCompared > 0 ? totals.shadowMismatched / totals.shadowCompared : null,
    newErrorRate: totals.readsNew > 0 ? totals.readsNewFailed / totals.readsNew : null,
    readLatencyRatio: meanOld !== null && meanNew !== null && meanOld > 0 ? meanNew / meanOld : null,
  };
}
