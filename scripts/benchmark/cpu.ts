// CPU time per process over one measured copy, read from /proc (Linux), so that the cost of
// orchestration (Temporal server, worker) shows beside the cost of copying (the two PostgreSQL
// servers). A server's figure is its whole process tree: the postmaster and every backend, plus
// what the backends that ended meanwhile used (their parent's cutime/cstime counts them once
// reaped). This process's figure is its own time plus that of the children it reaped (pgcopydb
// and the tools it runs); the servers it started are counted apart, as trees of their own.
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { LocalStack } from '../../provision/local-stack';

/** CPU seconds (user + system) of each process taking part in a copy. */
export interface CpuSeconds {
  oldPostgres: number;
  newPostgres: number;
  /** The process that moves the rows: this one (the in-process worker, or the COPY pipe), or pgcopydb. */
  worker: number;
  temporal: number;
}

export interface CpuProcesses {
  oldPostmaster: number | undefined;
  newPostmaster: number | undefined;
  temporal: number;
}

interface ProcStat {
  ppid: number;
  /** utime + stime + cutime + cstime, in clock ticks. */
  ticks: number;
}

let ticksPerSecond: number | undefined;

function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    const answer = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout?.trim());
    ticksPerSecond = Number.isInteger(answer) && answer > 0 ? answer : 100;
  }
  return ticksPerSecond;
}

function readStat(pid: string): ProcStat | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // pid (comm) state ppid ...: comm may hold spaces and parentheses, so count after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // After comm: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
    const [utime, stime, cutime, cstime] = [11, 12, 13, 14].map((i) => Number(fields[i]));
    return { ppid: Number(fields[1]), ticks: utime! + stime! + cutime! + cstime! };
  } catch {
    return undefined; // ended while we looked
  }
}

function allProcesses(): Map<number, ProcStat> {
  const stats = new Map<number, ProcStat>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(entry);
    if (stat !== undefined) stats.set(Number(entry), stat);
  }
  return stats;
}

/** `root` and all its live descendants (none when `root` is not alive). */
function treeOf(stats: Map<number, ProcStat>, root: number | undefined): number[] {
  if (root === undefined || !stats.has(root)) return [];
  const children = new Map<number, number[]>();
  for (const [pid, stat] of stats) children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), pid]);
  const tree: number[] = [];
  const queue = [root];
  for (let pid = queue.pop(); pid !== undefined; pid = queue.pop()) {
    tree.push(pid);
    queue.push(...(children.get(pid) ?? []));
  }
  return tree;
}

/** Ticks of `root` and all its live descendants (each with what its reaped children used). */
function treeTicks(stats: Map<number, ProcStat>, root: number | undefined): number {
  return treeOf(stats, root).reduce((ticks, pid) => ticks + (stats.get(pid)?.ticks ?? 0), 0);
}

/** The live processes of `root`'s tree (Linux; none elsewhere). */
export function processTree(root: number | undefined): number[] {
  return process.platform === 'linux' ? treeOf(allProcesses(), root) : [];
}

/** CPU seconds used so far by each process; undefined where /proc cannot tell (not Linux). */
export function sampleCpu(processes: CpuProcesses): CpuSeconds | undefined {
  if (process.platform !== 'linux') return undefined;
  const stats = allProcesses();
  const seconds = (ticks: number) => ticks / clockTicks();
  return {
    oldPostgres: seconds(treeTicks(stats, processes.oldPostmaster)),
    newPostgres: seconds(treeTicks(stats, processes.newPostmaster)),
    worker: seconds(stats.get(process.pid)?.ticks ?? 0),
    temporal: seconds(treeTicks(stats, processes.temporal)),
  };
}

/** CPU seconds used so far by a local stack's two PostgreSQL servers, this process and its Temporal server. */
export function sampleStackCpu(stack: Pick<LocalStack, 'old' | 'new' | 'temporal'>): CpuSeconds | undefined {
  return sampleCpu({
    oldPostmaster: stack.old.postmasterPid,
    newPostmaster: stack.new.postmasterPid,
    temporal: stack.temporal.pid,
  });
}

/** CPU seconds between two samples per `units` (rows, seconds). */
function cpuPer(
  before: CpuSeconds | undefined,
  after: CpuSeconds | undefined,
  units: number,
): CpuSeconds | undefined {
  if (before === undefined || after === undefined || units <= 0) return undefined;
  const per = (key: keyof CpuSeconds) => (after[key] - before[key]) / units;
  return {
    oldPostgres: per('oldPostgres'),
    newPostgres: per('newPostgres'),
    worker: per('worker'),
    temporal: per('temporal'),
  };
}

/** CPU seconds per million rows between two samples. */
export function cpuPerMillionRows(
  before: CpuSeconds | undefined,
  after: CpuSeconds | undefined,
  rows: number,
): CpuSeconds | undefined {
  return cpuPer(before, after, rows / 1_000_000);
}

/** The cores each process kept busy on average between two samples `seconds` apart. */
export function coresBusy(
  before: CpuSeconds | undefined,
  after: CpuSeconds | undefined,
  seconds: number,
): CpuSeconds | undefined {
  return cpuPer(before, after, seconds);
}

/** A line of cores busy by process, as the load bench prints it. */
export function describeCores(cores: CpuSeconds): string {
  return `old ${cores.oldPostgres.toFixed(2)}, new ${cores.newPostgres.toFixed(2)}, worker+load ${cores.worker.toFixed(2)}, temporal ${cores.temporal.toFixed(2)}`;
}
