// How long the calling thread has waited for a CPU (Linux's schedstat of the thread; nothing
// elsewhere), so that a time measured on a busy machine can leave out the measuring thread's own wait:
// the latency probe's runs (latency-probe-thread.ts) and the benchmark's write load. No side effects:
// thread bodies import it.
import { readFileSync } from 'node:fs';

/**
 * Nanoseconds this thread has spent ready to run but waiting for a CPU (the second field of
 * /proc/thread-self/schedstat); undefined where the system does not tell.
 */
export function cpuWaitNs(): bigint | undefined {
  try {
    const waited = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[1];
    return waited === undefined || !/^\d+$/.test(waited) ? undefined : BigInt(waited);
  } catch {
    return undefined;
  }
}

/** The thread's wait for a CPU between two cpuWaitNs readings, in ns (0 when either is unknown). */
export function waitedNsBetween(waitedBefore?: bigint, waitedAfter?: bigint): bigint {
  return waitedBefore === undefined || waitedAfter === undefined || waitedAfter < waitedBefore
    ? 0n
    : waitedAfter - waitedBefore;
}

/** A run's time in ms without the thread's wait for a CPU between the two schedstat readings. */
export function runTime(elapsedNs: bigint, waitedBefore?: bigint, waitedAfter?: bigint) {
  const waitedNs = waitedNsBetween(waitedBefore, waitedAfter);
  const waited = waitedNs > elapsedNs ? elapsedNs : waitedNs;
  return { ms: Number(elapsedNs - waited) / 1e6, waitedMs: Number(waited) / 1e6 };
}
