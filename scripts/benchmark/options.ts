// The benchmark's settings, read from BENCH_* environment variables (listed in scripts/benchmark.ts).
// A bad value is an OperatorError naming the variable and what it accepts.
import { OperatorError } from '../../model/errors';

export const BENCH_MODES = ['throughput', 'load'] as const;
export type BenchMode = (typeof BENCH_MODES)[number];

export const COPY_METHODS = ['copy', 'chunked', 'pgcopydb', 'backfill'] as const;
export type CopyMethod = (typeof COPY_METHODS)[number];

export interface WriteLoadOptions {
  /** Target operations per second over all clients. */
  rate: number;
  clients: number;
  /** Length of the idle window measured before the backfill starts. */
  baselineSeconds: number;
  /**
   * The load pauses after this many seconds of copying, until the copy is done (null: never): the
   * copy's rate with the application idle, beside its rate under the load.
   */
  pauseAfterSeconds: number | null;
  /**
   * Old's PostgreSQL and the load's thread on one CPU of their own, everything else on the others
   * (cpu-placement.ts): the copy's cost to the application apart from the worker's and Temporal's.
   */
  oldApart: boolean;
}

export interface BenchOptions {
  mode: BenchMode;
  rows: number;
  chunkSize: number;
  /** Passed to the backfill workflow only when set. */
  partitions?: number;
  chunksInFlight?: number;
  chunksPerActivity?: number;
  /** The backfill's row rate limit (throttle.maxRowsPerSecond); the default throttle when unset. */
  maxRowsPerSecond?: number;
  /**
   * The latency brake's ratio (throttle.latencyTarget); null: off. Throughput mode measures the
   * copy's speed, so off by default there; load mode keeps the default brake.
   */
  latencyRatio: number | null | 'default';
  /** Throughput mode: which methods to run, in this order. */
  methods: CopyMethod[];
  pgcopydb: { jobs: number; splitTablesLargerThan?: string; clientBinDir: string };
  load: WriteLoadOptions;
}

type Env = Record<string, string | undefined>;

/** A whole number from the environment, or `fallback` when unset; refused outside min..max. */
export function wholeNumber(env: Env, name: string, fallback: number, min: number, max: number): number {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  const parsed = Number(value.replace(/_/g, ''));
  if (!Number.isInteger(parsed) || parsed < min || parsed > max) {
    throw new OperatorError(`${name} is ${value}; it must be a whole number from ${min} to ${max}`);
  }
  return parsed;
}

function optionalWholeNumber(env: Env, name: string, min: number, max: number): number | undefined {
  const value = env[name];
  return value === undefined || value === '' ? undefined : wholeNumber(env, name, min, min, max);
}

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], fallback: T): T {
  const value = env[name];
  if (value === undefined || value === '') return fallback;
  if (!(allowed as readonly string[]).includes(value)) {
    throw new OperatorError(`${name} is ${value}; it must be one of ${allowed.join(', ')}`);
  }
  return value as T;
}

function methodList(env: Env): CopyMethod[] {
  const value = env.BENCH_METHODS;
  if (value === undefined || value.trim() === '') return [...COPY_METHODS];
  const names = value.split(',').map((name) => name.trim());
  const unknown = names.filter((name) => !(COPY_METHODS as readonly string[]).includes(name));
  if (unknown.length > 0 || names.length === 0) {
    throw new OperatorError(
      `BENCH_METHODS is ${value}; it must be a comma-separated list of ${COPY_METHODS.join(', ')}`,
    );
  }
  return COPY_METHODS.filter((method) => names.includes(method));
}

function byteSize(env: Env, name: string): string | undefined {
  const value = env[name];
  if (value === undefined || value === '') return undefined;
  if (!/^\d+\s*(B|kB|MB|GB|TB)?$/.test(value)) {
    throw new OperatorError(`${name} is ${value}; it must be a size such as 64MB (units B, kB, MB, GB, TB)`);
  }
  return value.replace(/\s+/g, '');
}

/** BENCH_LATENCY_TARGET: a ratio from 1.1, off, or default; unset: off in throughput mode, default in load. */
function latencyRatio(env: Env, mode: BenchMode): number | null | 'default' {
  const value = env.BENCH_LATENCY_TARGET;
  if (value === undefined || value === '') return mode === 'throughput' ? null : 'default';
  if (value === 'off') return null;
  if (value === 'default') return value;
  const ratio = Number(value);
  if (!Number.isFinite(ratio) || ratio < 1.1) {
    throw new OperatorError(`BENCH_LATENCY_TARGET is ${value}; it must be a ratio from 1.1, off or default`);
  }
  return ratio;
}

export function readBenchOptions(env: Env = process.env): BenchOptions {
  const mode = oneOf(env, 'BENCH_MODE', BENCH_MODES, 'throughput');
  const oldApart = oneOf(env, 'BENCH_OLD_APART', ['on', 'off'], 'off') === 'on';
  if (oldApart && mode !== 'load') {
    throw new OperatorError('BENCH_OLD_APART is on; it applies to BENCH_MODE=load only');
  }
  const partitions = optionalWholeNumber(env, 'BENCH_PARTITIONS', 1, 1024);
  const chunksInFlight = optionalWholeNumber(env, 'BENCH_CHUNKS_IN_FLIGHT', 1, 1024);
  const chunksPerActivity = optionalWholeNumber(env, 'BENCH_CHUNKS_PER_ACTIVITY', 1, 64);
  const maxRowsPerSecond = optionalWholeNumber(env, 'BENCH_MAX_ROWS_PER_SECOND', 1, 100_000_000);
  const splitTablesLargerThan = byteSize(env, 'BENCH_PGCOPYDB_SPLIT');
  return {
    mode,
    rows: wholeNumber(env, 'BENCH_ROWS', 2_000_000, 1, 1_000_000_000),
    chunkSize: wholeNumber(env, 'BENCH_CHUNK_SIZE', 1000, 1, 100_000),
    ...(partitions !== undefined && { partitions }),
    ...(chunksInFlight !== undefined && { chunksInFlight }),
    ...(chunksPerActivity !== undefined && { chunksPerActivity }),
    ...(maxRowsPerSecond !== undefined && { maxRowsPerSecond }),
    latencyRatio: latencyRatio(env, mode),
    methods: methodList(env),
    pgcopydb: {
      jobs: wholeNumber(env, 'BENCH_PGCOPYDB_JOBS', 2, 1, 64),
      ...(splitTablesLargerThan !== undefined && { splitTablesLargerThan }),
      clientBinDir: env.BENCH_PG_BINDIR || '/usr/lib/postgresql/15/bin',
    },
    load: {
      rate: wholeNumber(env, 'BENCH_LOAD_RATE', 200, 1, 100_000),
      clients: wholeNumber(env, 'BENCH_LOAD_CLIENTS', 4, 1, 256),
      baselineSeconds: wholeNumber(env, 'BENCH_LOAD_BASELINE_SECONDS', 10, 1, 3600),
      pauseAfterSeconds:
        env.BENCH_LOAD_PAUSE_AFTER_SECONDS === 'off'
          ? null
          : wholeNumber(env, 'BENCH_LOAD_PAUSE_AFTER_SECONDS', 60, 1, 86_400),
      oldApart,
    },
  };
}
