// The concurrent write load of `BENCH_MODE=load`, seen from the main thread: starts the load thread
// (write-load-thread.ts), labels the phases (idle, backfill, ...) whose latencies are kept apart,
// and turns the samples into p50/p99 per phase, and the p99 of each few seconds of a phase (where in
// the copy the application's tail comes from).
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { FromLoadThread, ToLoadThread, WriteLoadThreadData } from './write-load-messages';

export interface LatencySummary {
  operations: number;
  errors: number;
  /** Achieved operations per second over the phase (below the target rate when writes stall). */
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** The p99 with each write's time less what the load's own thread waited for a CPU meanwhile. */
  p99WithoutOwnCpuWaitMs: number;
}

/** The seconds of a phase a timeline entry covers. */
export const TIMELINE_SECONDS = 5;

/** The writes of one TIMELINE_SECONDS window of a phase, from `fromSeconds` after its start. */
export interface TimelineWindow {
  fromSeconds: number;
  writes: number;
  p99Ms: number;
}

export interface LoadResult {
  phases: Record<string, LatencySummary>;
  timelines: Record<string, TimelineWindow[]>;
  lastError?: string;
}

/** The p99 of each TIMELINE_SECONDS of a phase that started at `startedAt` (ms since the epoch). */
function timeline(
  latencies: readonly number[],
  endedAt: readonly number[],
  startedAt: number,
): TimelineWindow[] {
  const windows: number[][] = [];
  latencies.forEach((ms, i) => {
    const window = Math.max(0, Math.floor((endedAt[i]! - startedAt) / (TIMELINE_SECONDS * 1000)));
    (windows[window] ??= []).push(ms);
  });
  return Array.from(windows, (samples, i) => {
    const sorted = [...(samples ?? [])].sort((a, b) => a - b);
    return { fromSeconds: i * TIMELINE_SECONDS, writes: sorted.length, p99Ms: percentile(sorted, 99) };
  });
}

/** Nearest-rank percentile of ascending `sorted`. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(rank, 1)) - 1]!;
}

export function summarize(
  samples: readonly number[],
  errors: number,
  seconds: number,
  ownCpuWaits: readonly number[] = [],
): LatencySummary {
  const sorted = [...samples].sort((a, b) => a - b);
  const withoutOwnWait = samples
    .map((ms, i) => Math.max(0, ms - (ownCpuWaits[i] ?? 0)))
    .sort((a, b) => a - b);
  return {
    operations: sorted.length,
    errors,
    perSecond: seconds > 0 ? sorted.length / seconds : Number.NaN,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    maxMs: sorted[sorted.length - 1] ?? Number.NaN,
    p99WithoutOwnCpuWaitMs: percentile(withoutOwnWait, 99),
  };
}

export class WriteLoad {
  private readonly phaseStarts: { phase: string; at: number }[] = [
    { phase: 'warmup', at: performance.now() },
  ];

  /** What ended the load thread, when it failed after it started (stop() throws it). */
  private failure: Error | undefined;

  private constructor(
    private readonly thread: Worker,
    /** The load thread's id in the OS (Linux), to pin it to a CPU. */
    readonly osThreadId: number | undefined,
  ) {
    // A failure of the thread once it runs (a server ending its sessions) is the load's to report
    // when it stops, not an uncaught error of the bench.
    thread.on('error', (err) => (this.failure ??= err));
  }

  /** Starts the load and resolves once every client is connected and writing. */
  static async start(data: WriteLoadThreadData): Promise<WriteLoad> {
    const thread = new Worker(path.join(__dirname, 'write-load-thread.js'), { workerData: data });
    const osThreadId = await new Promise<number | undefined>((resolve, reject) => {
      thread.once('error', reject);
      thread.once('message', (message: FromLoadThread) => {
        thread.removeListener('error', reject);
        if (message.type === 'ready') resolve(message.osThreadId);
        else
          reject(
            new Error(`the write load did not start: ${message.type === 'failed' ? message.message : ''}`),
          );
      });
    });
    return new WriteLoad(thread, osThreadId);
  }

  /** Writes from now on count toward `phase`. */
  mark(phase: string): void {
    this.phaseStarts.push({ phase, at: performance.now() });
    this.thread.postMessage({ type: 'phase', phase } satisfies ToLoadThread);
  }

  /** Stops the writes and returns the latency of each phase. */
  async stop(): Promise<LoadResult> {
    const stoppedAt = performance.now();
    const done = new Promise<Extract<FromLoadThread, { type: 'done' }>>((resolve, reject) => {
      const fail = (err: Error) => reject(new Error(`the write load failed: ${err.message}`));
      if (this.failure !== undefined) fail(this.failure);
      this.thread.once('error', fail);
      this.thread.on('message', (message: FromLoadThread) => {
        if (message.type === 'done') resolve(message);
      });
    });
    this.thread.postMessage({ type: 'stop' } satisfies ToLoadThread);
    try {
      const { latencies, endedAt, ownCpuWaits, errors, lastError } = await done;
      const phases: Record<string, LatencySummary> = {};
      const timelines: Record<string, TimelineWindow[]> = {};
      this.phaseStarts.forEach(({ phase, at }, i) => {
        const end = this.phaseStarts[i + 1]?.at ?? stoppedAt;
        phases[phase] = summarize(
          latencies[phase] ?? [],
          errors[phase] ?? 0,
          (end - at) / 1000,
          ownCpuWaits[phase] ?? [],
        );
        timelines[phase] = timeline(
          latencies[phase] ?? [],
          endedAt[phase] ?? [],
          performance.timeOrigin + at,
        );
      });
      return { phases, timelines, ...(lastError !== undefined && { lastError }) };
    } finally {
      await this.thread.terminate();
    }
  }

  /** Ends the load at once, results unread (on interruption). */
  async abort(): Promise<void> {
    await this.thread.terminate();
  }
}
