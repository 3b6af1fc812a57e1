// BENCH_OLD_APART: the load bench as a deployment would place it, on one machine. Old's PostgreSQL
// (the application's database) and the write load's thread (the application) get CPU 0 to
// themselves; new's PostgreSQL, the Temporal server and this process (the worker, its probe thread,
// the bench's own sampling) share the others. So what the copy still costs the load is what it costs
// old (reading the rows, the brake's probe, sessions), without the worker and Temporal bursting on
// the same cores. Pinning uses `taskset` (util-linux): a postmaster's backends forked later inherit
// its CPUs, and so do threads started later by a pinned thread.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { OperatorError } from '../../model/errors';
import { processTree } from './cpu';

export interface CpuPlacement {
  /** CPUs of old's PostgreSQL and the load's thread. */
  old: number[];
  /** CPUs of everything else: new's PostgreSQL, the Temporal server, this process. */
  rest: number[];
}

/** Pins every thread of `pid` (`allThreads`) or that one thread to `cpus`. */
function pin(pid: number, cpus: number[], allThreads: boolean): void {
  const args = [...(allThreads ? ['-a'] : []), '-p', '-c', cpus.join(','), String(pid)];
  const result = spawnSync('taskset', args, { encoding: 'utf8' });
  // A process that ended meanwhile (a backend whose session closed) has nothing left to pin.
  if (result.status !== 0 && existsSync(`/proc/${pid}`)) {
    throw new Error(
      `taskset ${args.join(' ')} failed: ${(result.stderr || result.error?.message || '').trim()}`,
    );
  }
}

/** Refuses BENCH_OLD_APART where it cannot work, before anything starts. */
export function checkCpuPlacementPossible(): void {
  if (process.platform !== 'linux')
    throw new OperatorError('BENCH_OLD_APART needs Linux (it pins with taskset)');
  if (os.availableParallelism() < 2) {
    throw new OperatorError('BENCH_OLD_APART needs at least 2 CPUs: old gets one to itself');
  }
  const found = spawnSync('taskset', ['--version'], { encoding: 'utf8' });
  if (found.error !== undefined || found.status !== 0) {
    throw new OperatorError('BENCH_OLD_APART needs taskset (Debian: apt-get install util-linux)');
  }
}

/**
 * Old's tree and the load's thread on the first CPU this process may use, everything else on the
 * rest. `loadThread` is the load thread's OS thread id.
 */
export function placeOldApart(processes: {
  oldPostmaster: number;
  newPostmaster: number;
  temporal: number;
  loadThread: number;
}): CpuPlacement {
  const cpus = usableCpus();
  const placement = { old: cpus.slice(0, 1), rest: cpus.slice(1) };
  for (const pid of processTree(processes.oldPostmaster)) pin(pid, placement.old, true);
  for (const root of [processes.newPostmaster, processes.temporal]) {
    for (const pid of processTree(root)) pin(pid, placement.rest, true);
  }
  // This process's threads first, then the load's thread out of them.
  pin(process.pid, placement.rest, true);
  pin(processes.loadThread, placement.old, false);
  return placement;
}

/**
 * The CPUs this process may run on (its affinity), lowest first; at least two, as
 * checkCpuPlacementPossible made sure (availableParallelism follows the affinity).
 */
function usableCpus(): number[] {
  const result = spawnSync('taskset', ['-c', '-p', String(process.pid)], { encoding: 'utf8' });
  const cpus = cpusOfAffinity(result.stdout ?? '');
  if (cpus === undefined) throw new Error(`taskset could not read this process's CPUs: ${result.stderr}`);
  return cpus;
}

/** The CPUs in `taskset -c -p`'s answer ("pid 123's current affinity list: 0-3,6"), lowest first. */
export function cpusOfAffinity(answer: string): number[] | undefined {
  const list = /list:\s*([\d,-]+)\s*$/.exec(answer.trim())?.[1];
  if (list === undefined) return undefined;
  const cpus = list.split(',').flatMap((part) => {
    const [from, to = from] = part.split('-').map(Number);
    return from === undefined || to === undefined || Number.isNaN(from) || Number.isNaN(to) || to < from
      ? []
      : Array.from({ length: to - from + 1 }, (_, i) => from + i);
  });
  return [...new Set(cpus)].sort((a, b) => a - b);
}
