// The latency brake's probe runs in the background: the first reading of a source and probe query in
// this worker starts a thread (latency-probe-thread.ts) that runs the query every PROBE_EVERY_MS, and
// each reading takes the runs of the window it asks for. So a reading sees the latency the source
// gave over those seconds, its tail included (a handful of runs back to back saw mostly the fast
// moments), and it costs no wait: only the first one waits for MIN_RUNS runs. A run still under way
// counts as slow as it has been so far, so a source that stalls reads as slow, not as silent. The
// probes are the process's (LATENCY_PROBES): activities built on other pools of the same database,
// a worker started again in one process, find the probe running. A probe no reading asked for in
// IDLE_STOP_MS stops; its thread never keeps the process alive.
// The thread also reads pg_stat_statements' counters of the application's statements every
// STATEMENTS_EVERY_MS: a window gives how many ran in it and their mean time.
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type pg from 'pg';
import type { FromProbeThread, ProbeThreadData, ToProbeThread } from './latency-probe-thread';
import type { StatementsReading } from '../model/latency-throttle';

/** The pause between two runs of the probe query, in ms. */
export const PROBE_EVERY_MS = 50;
/** How often the application's statements are counted (pg_stat_statements), in ms. */
export const STATEMENTS_EVERY_MS = 1000;
/** A reading goes by at least this many runs (two seconds' worth): the first one waits for them. */
export const MIN_RUNS = 40;
/** A probe that no reading asked for this long stops, in ms. */
const IDLE_STOP_MS = 120_000;
/** Runs older than this are dropped, in ms: no window is longer. */
const KEPT_MS = 600_000;
/**
 * How long the first reading waits for its runs, in ms (under the activity's heartbeat timeout); one
 * whose probe failed before it ever ran gives up at once with the error.
 */
const FIRST_READING_WAIT_MS = 10_000;

export interface ProbeWindow {
  /** The window's runs, in ms, slowest last. */
  runs: number[];
  /**
   * The application's statements in the window (pg_stat_statements): null when it cannot tell (not
   * available, fewer than two counts yet, or counters reset in the window; `statementsUnavailable`
   * then says why, when it is the first).
   */
  statements: StatementsReading | null;
  statementsUnavailable?: string;
}

/** One count of the application's statements so far. */
export interface StatementsCount {
  at: number;
  calls: number;
  totalMs: number;
}

/**
 * The statements between the last count at or before `from` (or the first count, when all are later)
 * and the last count; null with fewer than two counts, or when the counters went back (a reset).
 */
export function statementsSince(counts: readonly StatementsCount[], from: number): StatementsReading | null {
  const last = counts.at(-1);
  if (last === undefined) return null;
  let first = 0;
  for (let i = 0; i < counts.length && counts[i]!.at <= from; i++) first = i;
  for (let i = first + 1; i < counts.length; i++) {
    if (counts[i]!.calls < counts[i - 1]!.calls || counts[i]!.totalMs < counts[i - 1]!.totalMs) return null;
  }
  const start = counts[first]!;
  if (start === last) return null;
  const calls = last.calls - start.calls;
  return {
    calls,
    meanMs: calls === 0 ? 0 : Math.round(((last.totalMs - start.totalMs) / calls) * 1000) / 1000,
  };
}

class RunningProbe {
  private readonly runs: Array<{ at: number; ms: number }> = [];
  private readonly statementCounts: StatementsCount[] = [];
  private statementsUnavailable: string | undefined;
  private lastError: string | undefined;
  /** When the run under way started (undefined between runs). */
  private runningSince: number | undefined;
  private arrived: Array<() => void> = [];
  lastAsked = Date.now();

  constructor(private readonly thread: Worker) {
    thread.on('message', (message: FromProbeThread) => {
      if (message.type === 'statements') {
        this.statementCounts.push({ at: message.at, calls: message.calls, totalMs: message.totalMs });
        while (this.statementCounts[0]!.at < message.at - KEPT_MS) this.statementCounts.shift();
        this.statementsUnavailable = undefined;
        return;
      }
      if (message.type === 'statements-unavailable') {
        this.statementsUnavailable = message.message;
        return;
      }
      if (message.type === 'started') {
        this.runningSince = message.at;
        return;
      }
      this.runningSince = undefined;
      if (message.type === 'run') {
        this.runs.push({ at: message.at, ms: message.ms });
        while (this.runs.length > 0 && this.runs[0]!.at < message.at - KEPT_MS) this.runs.shift();
        this.lastError = undefined;
      } else {
        this.lastError = message.message;
      }
      for (const wake of this.arrived.splice(0)) wake();
    });
    thread.on('error', (err) => {
      this.lastError = err.message;
      for (const wake of this.arrived.splice(0)) wake();
    });
    // The thread never keeps the worker process alive.
    thread.unref();
  }

  /** The runs of the last `windowMs`; the first reading waits until there are MIN_RUNS of them. */
  async window(windowMs: number): Promise<ProbeWindow> {
    this.lastAsked = Date.now();
    const giveUpAt = Date.now() + FIRST_READING_WAIT_MS;
    for (;;) {
      const now = Date.now();
      const inWindow = this.runs.filter((run) => run.at >= now - windowMs).map((run) => run.ms);
      const running = this.runningSince === undefined ? 0 : now - this.runningSince;
      if (running > PROBE_EVERY_MS) inWindow.push(running);
      if (inWindow.length >= MIN_RUNS || (inWindow.length > 0 && this.runs.length >= MIN_RUNS)) {
        const statements = statementsSince(this.statementCounts, now - windowMs);
        return {
          runs: inWindow.sort((a, b) => a - b),
          statements,
          ...(statements === null &&
            this.statementsUnavailable !== undefined && {
              statementsUnavailable: this.statementsUnavailable,
            }),
        };
      }
      if (this.lastError !== undefined && this.runs.length === 0) {
        throw new Error(`the probe query failed: ${this.lastError}`);
      }
      if (Date.now() >= giveUpAt) {
        throw new Error(
          this.lastError === undefined
            ? `the probe query ran ${inWindow.length} times in ${FIRST_READING_WAIT_MS / 1000} s`
            : `the probe query failed: ${this.lastError}`,
        );
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 1000);
        this.arrived.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  stop(): void {
    this.thread.postMessage({ type: 'stop' } satisfies ToProbeThread);
    // A thread that does not end its session on its own in a few seconds is ended.
    setTimeout(() => void this.thread.terminate(), 5000).unref();
  }
}

export class LatencyProbes {
  private readonly probes = new Map<string, RunningProbe>();
  private idleCheck: NodeJS.Timeout | undefined;

  /**
   * The probe runs of the last `windowMs` on a session `session` opens, starting the probe when none
   * runs there.
   */
  window(session: pg.ClientConfig, probeQuery: string, windowMs: number): Promise<ProbeWindow> {
    const key = JSON.stringify([session.connectionString, session.options, probeQuery]);
    let probe = this.probes.get(key);
    if (probe === undefined) {
      const data: ProbeThreadData = {
        session,
        probeQuery,
        everyMs: PROBE_EVERY_MS,
        statementsEveryMs: STATEMENTS_EVERY_MS,
      };
      probe = new RunningProbe(
        new Worker(path.join(__dirname, 'latency-probe-thread.js'), { workerData: data }),
      );
      this.probes.set(key, probe);
      this.idleCheck ??= setInterval(() => this.stopIdle(), IDLE_STOP_MS / 4).unref();
    }
    return probe.window(windowMs);
  }

  private stopIdle(): void {
    for (const [key, probe] of this.probes) {
      if (Date.now() - probe.lastAsked < IDLE_STOP_MS) continue;
      probe.stop();
      this.probes.delete(key);
    }
    if (this.probes.size === 0) {
      clearInterval(this.idleCheck);
      this.idleCheck = undefined;
    }
  }
}

/** The process's probes. */
export const LATENCY_PROBES = new LatencyProbes();
