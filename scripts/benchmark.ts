#!/usr/bin/env node
// `npm run bench`: measures this project's backfill against the tools an operator would otherwise
// use, in one run on one machine (a benchmark that prints figures, never a timed test).
//
// It starts a throwaway stack (Temporal dev server, two embedded PostgreSQL 15 servers with the same
// settings), seeds `public.orders` on old (the sample table: 11 columns of awkward types, sparse
// bigint keys), then:
//
//   BENCH_MODE=throughput (default): copies the table to new four ways, each into its own fresh
//     database there, timing the copy only (wall clock, seeding and checks excluded):
//       1. COPY binary: `COPY (SELECT ...) TO STDOUT (FORMAT binary)` on old piped into
//          `COPY ... FROM STDIN (FORMAT binary)` on new (one stream, target table pre-created);
//       2. COPY in chunks: the same pipe, but in chunks of BENCH_CHUNK_SIZE rows, each COPY committed
//          in its own transaction over two sessions a side, with nothing else: the floor of the
//          backfill's own design (durable 1000-row chunks into a table whose primary key is in
//          place), so that what orchestration costs shows apart from what the design costs;
//       3. pgcopydb: `pgcopydb clone` of that table only (Debian's package, PostgreSQL 15 client
//          tools; it creates the table, copies, then builds the primary key and runs VACUUM ANALYZE,
//          all inside its time); skipped with a message when `pgcopydb` is not on PATH;
//       4. backfill: backfillTableWorkflow on an in-process worker, as `npm run demo` runs it; then
//          verificationWorkflow (defaults) on the copy, whose rows/s is compared with the backfill's.
//     After each, new must equal old row for row: same count and same order-independent hash of
//     every row's text form, computed on each server (see databases.ts). It prints rows/s, the
//     ratios backfill/COPY, backfill/pgcopydb, backfill/COPY in chunks and COPY in chunks/pgcopydb,
//     and the largest workflow history of the backfill.
//   BENCH_MODE=load: runs only the backfill, while a write load (single-row UPDATE/INSERT/DELETE by
//     primary key at a fixed rate, from a worker thread, as the application's role; old counts its
//     statements with pg_stat_statements, which the brake reads) runs on old; prints the load's p50/p99
//     latency before the backfill (idle), while it starts (capture installs, partitions are planned),
//     while it copies (from its first committed chunk), and for as long again after the copy (capture
//     and reconciliation still on, no copy: their cost apart from the copy's), and their ratios (also
//     with each write less what the load's own thread waited for a CPU meanwhile), with
//     the p99 of each 5 s of the copy. After a minute of copying the load pauses until the copy is
//     done: the copy's rate under the load and with the application idle are printed. The
//     reconciliation workflow runs alongside; once the load stops it drains the change log, and new
//     must then equal old row for row.
//
// Settings (environment):
//   BENCH_ROWS                   rows seeded on old (default 2000000)
//   BENCH_MODE                   throughput | load (default throughput)
//   BENCH_CHUNK_SIZE             backfill rows per chunk (default 1000)
//   BENCH_PARTITIONS             backfill partitions; passed to the workflow only when set
//   BENCH_CHUNKS_IN_FLIGHT       backfill chunks in flight; passed to the workflow only when set
//   BENCH_CHUNKS_PER_ACTIVITY    backfill chunks per activity; passed to the workflow only when set
//   BENCH_MAX_ROWS_PER_SECOND    backfill throttle.maxRowsPerSecond (default: the default throttle)
//   BENCH_LATENCY_TARGET         the latency brake's ratio, off or default (default: off in throughput
//                                mode, which measures the copy's speed; the default brake in load
//                                mode, whose probe query commits a transaction id, as the load's writes do)
//   BENCH_METHODS                throughput mode: a subset of copy,chunked,pgcopydb,backfill (default all)
//   BENCH_PGCOPYDB_JOBS          pgcopydb --table-jobs and --index-jobs (default 2)
//   BENCH_PGCOPYDB_SPLIT         pgcopydb --split-tables-larger-than, e.g. 64MB (default off)
//   BENCH_PG_BINDIR              client tools for pgcopydb (default /usr/lib/postgresql/15/bin)
//   BENCH_LOAD_RATE              load mode: target writes per second (default 200)
//   BENCH_LOAD_CLIENTS           load mode: connections writing (default 4)
//   BENCH_LOAD_BASELINE_SECONDS  load mode: idle window measured before the backfill (default 10)
//   BENCH_LOAD_PAUSE_AFTER_SECONDS  load mode: seconds of copying before the load pauses (default 60;
//                                off: it never does)
//   BENCH_OLD_APART              load mode: on pins old's PostgreSQL and the load's thread to one CPU
//                                and everything else to the others, as a deployment whose database has
//                                a machine of its own (Linux, taskset, 2 CPUs or more; default off)
// A bad value stops it with one line and exit code 2. A copy that differs from old, or a method that
// fails, makes it exit 1 (the other methods still run and print). Ctrl-C or SIGTERM stops pgcopydb,
// the load and the stack, and exits 130. pgcopydb's own output goes to .data/bench-pgcopydb.log.
// Both servers and the worker share this machine's CPUs: compare ratios, not absolute figures.
import path from 'node:path';
import { Client } from '@temporalio/client';
import { toleratingPool } from '../db/pools';
import type { TableRef } from '../model/tables';
import { quoteTable } from '../db/sql';
import { OperatorError } from '../model/errors';
import { parseSiteConfig } from '../config/load';
import { redactSecrets } from '../model/redact';
import { startLocalStack, type LocalStack } from '../provision/local-stack';
import { dataDir } from '../provision/project-paths';
import { sampleTableDdl, seedSampleRows } from '../provision/sample-table';
import { createMigrationWorker } from '../worker/create-worker';
import { createLogger } from '../db/logger';
import { installRuntime } from '../worker/runtime';
import {
  backfillInput,
  historyStats,
  runBackfill,
  runVerification,
  type BackfillRun,
  type VerificationRun,
  type HistoryStats,
} from './benchmark/backfill';
import { copyTableBinary, copyTableInChunks } from './benchmark/copy-pipe';
import {
  coresBusy,
  cpuPerMillionRows,
  describeCores,
  sampleStackCpu,
  type CpuSeconds,
} from './benchmark/cpu';
import { checkCpuPlacementPossible, placeOldApart, type CpuPlacement } from './benchmark/cpu-placement';
import {
  checkpoint,
  createFreshDatabase,
  dropDatabase,
  fingerprintTable,
  measureTable,
  sameFingerprint,
  serverVersion,
  settleTable,
  withClient,
  type TableFingerprint,
} from './benchmark/databases';
import { readBenchOptions, type BenchOptions, type CopyMethod } from './benchmark/options';
import { findPgcopydb, pgcopydbArgs, runPgcopydbClone } from './benchmark/pgcopydb';
import {
  formatBytes,
  formatCount,
  loadReport,
  rowsPerSecond,
  throughputReport,
  type MethodOutcome,
  type SourceDescription,
} from './benchmark/report';
import { writeBenchResults } from './benchmark/results';
import { backfillProgressQuery } from '../workflows/messages';
import type { LatencyThrottleState } from '../model/latency-throttle';
import { TIMELINE_SECONDS, WriteLoad, type LoadResult } from './benchmark/write-load';
import { CopyWatch, describeWindows, type WatchWindow } from './benchmark/copy-watch';
import { PAUSED_PHASE } from './benchmark/write-load-messages';

const logger = createLogger({ name: 'bench' });

const TABLE: TableRef = { schema: 'public', table: 'orders' };
const MIGRATION = 'bench';
/** Seeded keys are 3, 6, 9, ...: sparse, as real keys are. */
const KEY_STEP = 3;
/** Sessions per side of the `chunked` method: as many as pgcopydb's jobs and the backfill's default chunks in flight. */
const CHUNKED_LANES = 2;
const SEED_BATCH = 250_000;
/** Load mode: writes before the idle window starts (connections warm, plans cached), not counted. */
const LOAD_WARMUP_MS = 2000;
/** Load mode: how often the bench looks for the first copied rows (the end of the backfill's start). */
const COPY_START_POLL_MS = 100;
/** The stack's folder, deleted when it stops; pgcopydb's work files go in there too. */
const STACK_ROOT = path.join(dataDir, 'bench');
const PGCOPYDB_LOG = path.join(dataDir, 'bench-pgcopydb.log');

/**
 * The same on both servers and for all three methods. Durability stays at PostgreSQL's defaults
 * (fsync, synchronous_commit on), as on a production server; the buffers and WAL are sized so that
 * a checkpoint does not land in the middle of a measurement.
 */
const POSTGRES_SETTINGS: Record<string, string> = {
  shared_buffers: '1GB',
  maintenance_work_mem: '256MB',
  max_wal_size: '8GB',
  checkpoint_timeout: '30min',
  max_connections: '200',
};

interface Bench {
  options: BenchOptions;
  stack: LocalStack;
  client: Client;
  signal: AbortSignal;
  oldFingerprint?: TableFingerprint;
  /** The verification run after the backfill (throughput mode). */
  verification?: VerificationRun;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** CPU seconds used so far by old's and new's PostgreSQL, this process and the Temporal server. */
function cpuNow(bench: Bench): CpuSeconds | undefined {
  return sampleStackCpu(bench.stack);
}

/** Seeds old with the sample rows, then settles the table so that every method reads the same pages. */
async function seedSource(bench: Bench): Promise<SourceDescription> {
  const { rows } = bench.options;
  const url = bench.stack.old.url;
  const pool = toleratingPool({ connectionString: url, max: 1 });
  try {
    await pool.query(sampleTableDdl(TABLE));
    const started = performance.now();
    for (let first = 1; first <= rows; first += SEED_BATCH) {
      const count = Math.min(SEED_BATCH, rows - first + 1);
      await seedSampleRows(pool, TABLE, count, { first, step: KEY_STEP });
      logger.info(`seeding old: ${formatCount(first + count - 1)} / ${formatCount(rows)} rows`);
    }
    logger.info(`seeded in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    await pool.end();
  }
  await settleTable(url, TABLE);
  const size = await measureTable(url, TABLE);
  const versions = `old PostgreSQL ${await serverVersion(url)}, new PostgreSQL ${await serverVersion(bench.stack.new.url)}`;
  logger.info(
    `old: ${quoteTable(TABLE)} has ${formatCount(size.rows)} rows, avg ${size.avgRowBytes.toFixed(1)} B/row (pg_column_size), heap ${formatBytes(size.heapBytes)}, ${formatBytes(size.totalBytes)} with its primary key`,
  );
  return { ...size, versions };
}

/** Checks the copy on `targetUrl` against old; logs the outcome. */
async function verifyCopy(bench: Bench, method: CopyMethod, targetUrl: string): Promise<boolean> {
  const [oldPrint, newPrint] = await Promise.all([
    bench.oldFingerprint ?? fingerprintTable(bench.stack.old.url, TABLE),
    fingerprintTable(targetUrl, TABLE),
  ]);
  bench.oldFingerprint = oldPrint;
  if (sameFingerprint(oldPrint, newPrint)) {
    logger.info(
      `${method}: verified, new equals old (${formatCount(newPrint.rows)} rows, hash ${newPrint.hash})`,
    );
    return true;
  }
  logger.error(
    `${method}: MISMATCH: old has ${formatCount(oldPrint.rows)} rows (hash ${oldPrint.hash}), new has ${formatCount(newPrint.rows)} rows (hash ${newPrint.hash})`,
  );
  return false;
}

async function copyWithBinaryPipe(bench: Bench, targetUrl: string): Promise<Omit<MethodOutcome, 'method'>> {
  const cpuBefore = cpuNow(bench);
  const started = performance.now();
  const rows = await copyTableBinary(bench.stack.old.url, targetUrl, TABLE);
  const seconds = (performance.now() - started) / 1000;
  return {
    rows,
    seconds,
    cpuPerMillionRows: cpuPerMillionRows(cpuBefore, cpuNow(bench), rows),
    note: 'one binary COPY stream into the pre-created table',
  };
}

async function copyInChunks(bench: Bench, targetUrl: string): Promise<Omit<MethodOutcome, 'method'>> {
  const cpuBefore = cpuNow(bench);
  const started = performance.now();
  const options = { chunkRows: bench.options.chunkSize, keyStep: KEY_STEP, lanes: CHUNKED_LANES };
  const rows = await copyTableInChunks(bench.stack.old.url, targetUrl, TABLE, options);
  const seconds = (performance.now() - started) / 1000;
  return {
    rows,
    seconds,
    cpuPerMillionRows: cpuPerMillionRows(cpuBefore, cpuNow(bench), rows),
    note: `chunks of ${formatCount(options.chunkRows)} rows, each COPY committed on its own, ${options.lanes} lanes, nothing else`,
  };
}

async function copyWithPgcopydb(
  bench: Bench,
  targetUrl: string,
  executable: string,
): Promise<Omit<MethodOutcome, 'method'>> {
  const settings = bench.options.pgcopydb;
  logger.info(
    `pgcopydb: ${executable} ${pgcopydbArgs(settings, '<work>', '<filters>').join(' ')} (client tools ${settings.clientBinDir}; log ${PGCOPYDB_LOG})`,
  );
  const cpuBefore = cpuNow(bench);
  const run = await runPgcopydbClone({
    executable,
    settings,
    sourceUrl: bench.stack.old.url,
    targetUrl,
    table: TABLE,
    workDir: path.join(STACK_ROOT, 'pgcopydb'),
    logFile: PGCOPYDB_LOG,
    signal: bench.signal,
  });
  const cpuAfter = cpuNow(bench);
  if (run.pgDump !== undefined) logger.info(`pgcopydb: ran ${run.pgDump}`);
  for (const line of run.summary) logger.info(`pgcopydb: ${line}`);
  const { rows } = await measureTable(targetUrl, TABLE);
  return {
    rows,
    seconds: run.seconds,
    cpuPerMillionRows: cpuPerMillionRows(cpuBefore, cpuAfter, rows),
    note: `whole clone: schema, data, primary key built after the data, VACUUM ANALYZE; ${settings.jobs} jobs${settings.splitTablesLargerThan !== undefined ? `, split > ${settings.splitTablesLargerThan}` : ''}`,
  };
}

/** An in-process worker whose "new" connection is `targetUrl`. */
async function backfillWorker(bench: Bench, targetUrl: string) {
  const env = { ...process.env, ...bench.stack.env, NEW_DATABASE_URL: targetUrl };
  return createMigrationWorker(parseSiteConfig({ temporal: { taskQueue: 'bench' } }), env);
}

function backfillTuning(options: BenchOptions): string {
  return [
    `chunkSize ${options.chunkSize}`,
    ...(options.partitions !== undefined ? [`partitions ${options.partitions}`] : []),
    ...(options.chunksInFlight !== undefined ? [`chunksInFlight ${options.chunksInFlight}`] : []),
    ...(options.chunksPerActivity !== undefined ? [`chunksPerActivity ${options.chunksPerActivity}`] : []),
    ...(options.maxRowsPerSecond !== undefined ? [`maxRowsPerSecond ${options.maxRowsPerSecond}`] : []),
    `latency brake ${options.latencyRatio === null ? 'off' : options.latencyRatio === 'default' ? 'default (2× baseline)' : `${options.latencyRatio}× baseline`}`,
  ].join(', ');
}

async function copyWithBackfill(bench: Bench, targetUrl: string): Promise<Omit<MethodOutcome, 'method'>> {
  const worker = await backfillWorker(bench, targetUrl);
  const input = backfillInput(MIGRATION, TABLE, bench.options.chunkSize, bench.options);
  logger.info(`backfill: starting backfillTableWorkflow (${backfillTuning(bench.options)})`);
  // The CPU figures cover the copy only, as the clock does: not the worker's start (bundling).
  let cpuBefore: CpuSeconds | undefined;
  let cpuAfter: CpuSeconds | undefined;
  const run = await runBackfill(worker, bench.client, 'bench-backfill-orders', input, {
    onStart: () => (cpuBefore = cpuNow(bench)),
    afterCopy: () => {
      cpuAfter = cpuNow(bench);
      return Promise.resolve();
    },
  });
  logger.info('verification: starting verificationWorkflow (defaults) on the backfilled table');
  // A worker shuts down when its run ends: the verification gets a fresh one.
  const verifier = await backfillWorker(bench, targetUrl);
  bench.verification = await runVerification(verifier, bench.client, 'bench-verify-orders', MIGRATION, TABLE);
  return {
    rows: run.result.rowsCopied,
    seconds: run.seconds,
    cpuPerMillionRows: cpuPerMillionRows(cpuBefore, cpuAfter, run.result.rowsCopied),
    note: `${backfillTuning(bench.options)}; ${formatCount(run.result.chunksDone)} chunks`,
  };
}

/** Runs one method into its own fresh database on new, then verifies and drops that database. */
async function measureMethod(bench: Bench, method: CopyMethod): Promise<MethodOutcome> {
  const pgcopydb = method === 'pgcopydb' ? findPgcopydb() : undefined;
  if (method === 'pgcopydb' && pgcopydb === undefined) {
    const skipped = 'pgcopydb is not on PATH (Debian: apt-get install pgcopydb)';
    logger.warn(`pgcopydb: skipped, ${skipped}`);
    return { method, skipped, note: '' };
  }
  const database = `bench_${method}`;
  const targetUrl = await createFreshDatabase(bench.stack.new.url, database);
  // pgcopydb creates the table itself; the others get it pre-created, primary key included.
  if (method !== 'pgcopydb') await withClient(targetUrl, (client) => client.query(sampleTableDdl(TABLE)));
  await Promise.all([checkpoint(bench.stack.old.url), checkpoint(targetUrl)]);

  logger.info(`${method}: copying into database ${database} on new`);
  let measured: Omit<MethodOutcome, 'method'>;
  try {
    measured =
      method === 'copy'
        ? await copyWithBinaryPipe(bench, targetUrl)
        : method === 'chunked'
          ? await copyInChunks(bench, targetUrl)
          : method === 'pgcopydb'
            ? await copyWithPgcopydb(bench, targetUrl, pgcopydb!)
            : await copyWithBackfill(bench, targetUrl);
  } catch (err) {
    if (bench.signal.aborted) throw err;
    // One method failing does not hide the figures of the others; the run still exits 1.
    logger.error(`${method}: failed: ${redactSecrets((err as Error).message)}`);
    return { method, failed: redactSecrets((err as Error).message.split('\n')[0]!), note: '' };
  }
  const outcome: MethodOutcome = { method, ...measured };
  logger.info(
    `${method}: ${formatCount(outcome.rows ?? 0)} rows in ${outcome.seconds?.toFixed(1)} s, ${formatCount(rowsPerSecond(outcome) ?? 0)} rows/s`,
  );
  await settleTable(targetUrl, TABLE);
  outcome.verified = await verifyCopy(bench, method, targetUrl);
  await dropDatabase(bench.stack.new.url, database);
  return outcome;
}

async function backfillHistory(bench: Bench): Promise<HistoryStats | undefined> {
  try {
    return await historyStats(bench.client, MIGRATION);
  } catch (err) {
    logger.warn(`could not list the backfill's workflow executions: ${(err as Error).message}`);
    return undefined;
  }
}

async function runThroughput(bench: Bench, source: SourceDescription): Promise<number> {
  const outcomes: MethodOutcome[] = [];
  for (const method of bench.options.methods) outcomes.push(await measureMethod(bench, method));
  const history = bench.options.methods.includes('backfill') ? await backfillHistory(bench) : undefined;
  process.stdout.write(`\n${throughputReport(source, outcomes, history)}\n`);
  const backfill = outcomes.find((outcome) => outcome.method === 'backfill');
  if (bench.verification !== undefined && backfill !== undefined) {
    const { report, seconds } = bench.verification;
    const verificationRate = report.rowsFrom / seconds;
    process.stdout.write(
      `verification (defaults) of the backfilled table: ${formatCount(report.rowsFrom)} rows in ${seconds.toFixed(1)} s, ` +
        `${formatCount(Math.round(verificationRate))} rows/s, ${report.differences} differences; ` +
        `verification/backfill ${(verificationRate / (rowsPerSecond(backfill) ?? Infinity)).toFixed(2)} (goal: 1.00 or more)\n`,
    );
  }
  const rate = (method: string) => {
    const outcome = outcomes.find((o) => o.method === method);
    return outcome === undefined ? undefined : rowsPerSecond(outcome);
  };
  const written = writeBenchResults('backfill-throughput', {
    source,
    methods: outcomes.map((outcome) => ({
      ...outcome,
      rowsPerSecond: rowsPerSecond(outcome) ?? null,
      cpuPerMillionRows: outcome.cpuPerMillionRows ?? null,
    })),
    ratios: {
      backfillOverCopy: ratioOf(rate('backfill'), rate('copy')),
      backfillOverPgcopydb: ratioOf(rate('backfill'), rate('pgcopydb')),
      /** What the orchestration costs: the backfill against its own design's floor (COPY in chunks). */
      backfillOverChunked: ratioOf(rate('backfill'), rate('chunked')),
      /** What the design costs: 1000-row durable chunks with the key in place, against pgcopydb. */
      chunkedOverPgcopydb: ratioOf(rate('chunked'), rate('pgcopydb')),
    },
    /** The backfill's: CPU seconds per million rows copied, per process (methods[] has each method's). */
    cpuSecondsPerMillionRows: outcomes.find((o) => o.method === 'backfill')?.cpuPerMillionRows ?? null,
    verification:
      bench.verification === undefined
        ? null
        : {
            rows: bench.verification.report.rowsFrom,
            seconds: bench.verification.seconds,
            differences: bench.verification.report.differences,
          },
    history: history ?? null,
  });
  process.stdout.write(`figures: ${written}\n\n`);
  return outcomes.some((outcome) => outcome.verified === false || outcome.failed !== undefined) ? 1 : 0;
}

/** When the copy ran (performance.now() ms), and how far it got when the load paused (if it did). */
interface CopyTimes {
  startedAt?: number;
  paused?: { at: number; rows: number };
  endedAt?: number;
}

/**
 * The backfill into `targetUrl` while the write load runs on old: idle window first, then the
 * backfill; the load pauses after `pauseAfterSeconds` of copying, and writes again once it is done.
 */
async function backfillUnderLoad(
  bench: Bench,
  targetUrl: string,
): Promise<{
  run: BackfillRun;
  load: LoadResult;
  brake: LatencyThrottleState | null;
  copy: CopyTimes;
  watched: WatchWindow[];
  cores: PhaseCores;
  placement: CpuPlacement | null;
}> {
  const { load: loadOptions } = bench.options;
  // Bundling the workflows takes CPU: done before the idle window, not inside it.
  const worker = await backfillWorker(bench, targetUrl);
  // The brake's probe stands for the load's writes (no router runs here): a transaction that takes a
  // transaction id commits with a flush of the WAL, as each write of the load does, so it feels
  // what the copy does to the WAL and the disk; it changes no row.
  const input = backfillInput(MIGRATION, TABLE, bench.options.chunkSize, {
    ...bench.options,
    probeQuery: 'SELECT pg_current_xact_id()',
  });
  // The application's statements are counted (pg_stat_statements) for the brake, which tells them
  // from the migration's by role: the load connects as the application's own.
  await withClient(bench.stack.old.url, (client) =>
    client.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements'),
  );
  const load = await WriteLoad.start({
    url: bench.stack.old.appUrl,
    table: quoteTable(TABLE),
    seededRows: bench.options.rows,
    keyStep: KEY_STEP,
    rate: loadOptions.rate,
    clients: loadOptions.clients,
  });
  const endLoad = () => void load.abort();
  bench.signal.addEventListener('abort', endLoad, { once: true });
  let watch: CopyWatch | undefined;
  const cores: PhaseCores = { before: null, after: null };
  try {
    const placement = loadOptions.oldApart ? placeOldApartOrFail(bench, load) : null;
    if (placement !== null) {
      logger.info(
        `CPUs: old's PostgreSQL and the load on ${placement.old.join(',')}; new, Temporal and the worker on ${placement.rest.join(',')}`,
      );
    }
    logger.info(
      `load: ${loadOptions.rate} writes/s over ${loadOptions.clients} connections on old; measuring ${loadOptions.baselineSeconds} s before the backfill`,
    );
    await sleep(LOAD_WARMUP_MS);
    load.mark('idle');
    const before = cpuMark(bench);
    await sleep(loadOptions.baselineSeconds * 1000);
    cores.before = coresSince(bench, before);
    logger.info(`backfill: starting backfillTableWorkflow under load (${backfillTuning(bench.options)})`);
    let stoppedLoad: LoadResult | undefined;
    let brake: LatencyThrottleState | null = null;
    const workflowId = 'bench-backfill-orders-under-load';
    // Each second of the copy: the brake's limit, and what autovacuum and the checkpointer do.
    watch = new CopyWatch(
      { old: bench.stack.old.url, new: targetUrl },
      async () => (await bench.client.workflow.getHandle(workflowId).query(backfillProgressQuery)).latency,
      () => cpuNow(bench),
    );
    const copying = new AbortController();
    const copy: CopyTimes = {};
    let pauseTimer: NodeJS.Timeout | undefined;
    // The application goes idle mid-copy: the brake must let the copy run at full speed then.
    const pauseLoad = async () => {
      const rows = await withClient(targetUrl, (client) =>
        client.query<{ rows: string }>(`SELECT count(*) AS rows FROM ${quoteTable(TABLE)}`),
      );
      if (copying.signal.aborted) return;
      load.mark(PAUSED_PHASE);
      copy.paused = { at: performance.now(), rows: Number(rows.rows[0]?.rows ?? 0) };
      logger.info(`load: paused after ${loadOptions.pauseAfterSeconds} s of copying, until the copy is done`);
    };
    const run = await runBackfill(worker, bench.client, workflowId, input, {
      reconcile: true,
      onStart: () => {
        // Capture installs and the partitions are planned before the first row moves: a phase apart.
        load.mark('starting');
        watch?.start();
        void markWhenRowsArrive(
          targetUrl,
          () => {
            load.mark('backfill');
            copy.startedAt = performance.now();
            if (loadOptions.pauseAfterSeconds !== null) {
              pauseTimer = setTimeout(
                () => void pauseLoad().catch((err) => logger.warn(`load: could not pause: ${String(err)}`)),
                loadOptions.pauseAfterSeconds * 1000,
              );
            }
          },
          copying.signal,
        );
      },
      afterCopy: async () => {
        // The copy is done, capture and reconciliation still run: what they cost the load on their own.
        clearTimeout(pauseTimer);
        copy.endedAt = performance.now();
        copying.abort();
        await watch?.stop();
        load.mark('after');
        const after = cpuMark(bench);
        await sleep(loadOptions.baselineSeconds * 1000);
        cores.after = coresSince(bench, after);
        stoppedLoad = await load.stop();
        // What the latency brake decided over the copy (absent when it was off), while the worker runs.
        brake =
          (await bench.client.workflow.getHandle(workflowId).query(backfillProgressQuery)).latency ?? null;
      },
    });
    return {
      run,
      load: stoppedLoad ?? (await load.stop()),
      brake: brake as LatencyThrottleState | null,
      copy,
      watched:
        watch === undefined || copy.startedAt === undefined
          ? []
          : watch.windows(copy.startedAt, copy.paused?.at ?? copy.endedAt ?? performance.now()),
      cores,
      placement,
    };
  } catch (err) {
    await load.abort();
    throw err;
  } finally {
    await watch?.stop();
    bench.signal.removeEventListener('abort', endLoad);
  }
}

/** BENCH_OLD_APART: old and the load on a CPU of their own (cpu-placement.ts). */
function placeOldApartOrFail(bench: Bench, load: WriteLoad): CpuPlacement {
  const { old, new: target, temporal } = bench.stack;
  if (
    old.postmasterPid === undefined ||
    target.postmasterPid === undefined ||
    load.osThreadId === undefined
  ) {
    throw new OperatorError(
      "BENCH_OLD_APART: this system does not tell the servers' or the load thread's process ids",
    );
  }
  return placeOldApart({
    oldPostmaster: old.postmasterPid,
    newPostmaster: target.postmasterPid,
    temporal: temporal.pid,
    loadThread: load.osThreadId,
  });
}

/** The cores each process kept busy before the backfill (the load alone) and after the copy (the load, capture and reconciliation). */
interface PhaseCores {
  before: CpuSeconds | null;
  after: CpuSeconds | null;
}

function cpuMark(bench: Bench): { cpu: CpuSeconds | undefined; at: number } {
  return { cpu: cpuNow(bench), at: performance.now() };
}

function coresSince(bench: Bench, mark: { cpu: CpuSeconds | undefined; at: number }): CpuSeconds | null {
  return coresBusy(mark.cpu, cpuNow(bench), (performance.now() - mark.at) / 1000) ?? null;
}

/** Calls `arrived` once the table on `targetUrl` holds a row (the first chunk committed), unless aborted first. */
async function markWhenRowsArrive(
  targetUrl: string,
  arrived: () => void,
  signal: AbortSignal,
): Promise<void> {
  try {
    await withClient(targetUrl, async (client) => {
      while (!signal.aborted) {
        const found = await client.query<{ some: boolean }>(
          `SELECT EXISTS (SELECT 1 FROM ${quoteTable(TABLE)}) AS some`,
        );
        if (found.rows[0]?.some === true) {
          if (!signal.aborted) arrived();
          return;
        }
        await sleep(COPY_START_POLL_MS);
      }
    });
  } catch (err) {
    logger.warn(`load: could not tell when the first rows arrived: ${redactSecrets(String(err))}`);
  }
}

async function runUnderLoad(bench: Bench, source: SourceDescription): Promise<number> {
  const targetUrl = await createFreshDatabase(bench.stack.new.url, 'bench_backfill');
  await withClient(targetUrl, (client) => client.query(sampleTableDdl(TABLE)));
  const { run, load, brake, copy, watched, cores, placement } = await backfillUnderLoad(bench, targetUrl);
  if (load.lastError !== undefined) logger.warn(`load: last write error: ${load.lastError}`);
  const backfill: MethodOutcome = {
    method: 'backfill',
    rows: run.result.rowsCopied,
    seconds: run.seconds,
    note: backfillTuning(bench.options),
  };
  logger.info(
    `backfill: ${formatCount(run.result.rowsCopied)} rows in ${run.seconds.toFixed(1)} s under load, ${formatCount(rowsPerSecond(backfill) ?? 0)} rows/s`,
  );
  // The load's writes reached new through the change log, which reconciliation drained after the
  // load stopped: new must now equal old row for row.
  logger.info(
    `reconciliation: applied ${formatCount(run.reconciled?.entriesApplied ?? 0)} captured changes (${formatCount(run.reconciled?.keysSynced ?? 0)} keys)`,
  );
  await settleTable(targetUrl, TABLE);
  const verified = await verifyCopy(bench, 'backfill', targetUrl);
  backfill.verified = verified;
  const history = await backfillHistory(bench);
  process.stdout.write(
    `\n${loadReport(source, bench.options.load, load.phases, backfill, history, load.timelines.backfill)}\n`,
  );
  if (brake !== null) {
    process.stdout.write(
      `latency brake: baseline probe p99 ${brake.baseline.probeMs} ms${brake.baseline.statementsMs != null ? `, the load's statements mean ${brake.baseline.statementsMs} ms (pg_stat_statements)` : ''}; ${brake.decreases} times down, ${brake.increases} up; last: ${brake.reason ?? (brake.last === null ? 'never braked' : `never braked; last reading by the ${brake.last.by} ${brake.last.ms} ms against ${brake.last.targetMs} ms`)}\n`,
    );
  }
  process.stdout.write(
    `while the load wrote, by ${TIMELINE_SECONDS} s of the copy: the load's p99, the cores each process kept busy, the brake's limit (rows/s) and readings, checkpoints, autovacuum and sessions opened:\n${describeWindows(load.timelines.backfill ?? [], watched).join('\n')}\n`,
  );
  process.stdout.write(
    `cores busy: before the backfill (the load alone) ${cores.before === null ? '-' : describeCores(cores.before)}; after the copy (the load, capture and reconciliation) ${cores.after === null ? '-' : describeCores(cores.after)}\n`,
  );
  const rates = copyRates(copy, run.result.rowsCopied);
  process.stdout.write(
    `copy rate: ${rates.underLoad === null ? '-' : formatCount(rates.underLoad)} rows/s under the load; ${
      rates.loadPaused === null
        ? 'the load did not pause (the copy was done first)'
        : `${formatCount(rates.loadPaused)} rows/s once it paused (the application idle), after ${bench.options.load.pauseAfterSeconds} s`
    }\n`,
  );
  const idle = load.phases.idle;
  const during = load.phases.backfill;
  const written = writeBenchResults('backfill-under-load', {
    source,
    load: bench.options.load,
    phases: load.phases,
    /** Each phase by TIMELINE_SECONDS windows: `fromSeconds` after its start, `writes`, `p99Ms`. */
    timelines: load.timelines,
    /** The copy under the load by TIMELINE_SECONDS windows: the brake's limits and readings, checkpoints, autovacuum. */
    copyWatch: watched,
    /** The cores each process kept busy before the backfill and after the copy (the copy's are in copyWatch). */
    cpuCoresByPhase: cores,
    /** BENCH_OLD_APART: the CPUs of old and the load, and of the rest (null: all shared). */
    cpuPlacement: placement,
    ratios: {
      p50DuringOverBefore: ratioOf(during?.p50Ms, idle?.p50Ms),
      p99DuringOverBefore: ratioOf(during?.p99Ms, idle?.p99Ms),
      /** The same, each write less what the load's own thread waited for a CPU meanwhile. */
      p99WithoutOwnCpuWaitDuringOverBefore: ratioOf(
        during?.p99WithoutOwnCpuWaitMs,
        idle?.p99WithoutOwnCpuWaitMs,
      ),
      writesPerSecondDuringOverBefore: ratioOf(during?.perSecond, idle?.perSecond),
      /** While the backfill starts (capture installs, partitions are planned), before its first rows. */
      p50StartingOverBefore: ratioOf(load.phases.starting?.p50Ms, idle?.p50Ms),
      p99StartingOverBefore: ratioOf(load.phases.starting?.p99Ms, idle?.p99Ms),
      /** Once the copy is done, with capture and reconciliation still on: their cost apart from the copy's. */
      p50AfterOverBefore: ratioOf(load.phases.after?.p50Ms, idle?.p50Ms),
      p99AfterOverBefore: ratioOf(load.phases.after?.p99Ms, idle?.p99Ms),
    },
    backfill: { ...backfill, rowsPerSecond: rowsPerSecond(backfill) ?? null },
    /** The copy's rows/s while the load wrote, and once it paused (null: it did not pause). */
    copyRowsPerSecond: rates,
    brake,
    history: history ?? null,
  });
  process.stdout.write(`figures: ${written}\n\n`);
  return verified ? 0 : 1;
}

/** The copy's rate under the load and once it paused, from the times the bench noted. */
function copyRates(
  copy: CopyTimes,
  rowsCopied: number,
): { underLoad: number | null; loadPaused: number | null } {
  const { startedAt, paused, endedAt } = copy;
  if (startedAt === undefined || endedAt === undefined) return { underLoad: null, loadPaused: null };
  const perSecond = (rows: number, from: number, to: number) =>
    to > from ? rows / ((to - from) / 1000) : null;
  if (paused === undefined) return { underLoad: perSecond(rowsCopied, startedAt, endedAt), loadPaused: null };
  return {
    underLoad: perSecond(paused.rows, startedAt, paused.at),
    loadPaused: perSecond(Math.max(0, rowsCopied - paused.rows), paused.at, endedAt),
  };
}

/** a / b, or null when either is unknown. */
function ratioOf(a: number | undefined, b: number | undefined): number | null {
  return a === undefined || b === undefined || b === 0 ? null : a / b;
}

/** Aborted by SIGINT/SIGTERM: pgcopydb and the write load end, the stack stops, the exit code is 130. */
const interruption = new AbortController();

async function main(options: BenchOptions): Promise<number> {
  installRuntime(logger, []);
  let stack: LocalStack | undefined;
  let stopped: Promise<void> | undefined;
  // Once, whether the signal handler or the end of main() gets there first.
  const stopStack = () => (stopped ??= stack?.stop() ?? Promise.resolve());
  const onSignal = () => {
    interruption.abort();
    // While the servers are still starting, main() stops them as soon as they are up.
    if (stack !== undefined) void stopStack().then(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    logger.info(
      `bench: mode ${options.mode}, ${formatCount(options.rows)} rows; PostgreSQL 15 on both sides with ${Object.entries(
        POSTGRES_SETTINGS,
      )
        .map(([key, value]) => `${key}=${value}`)
        .join(' ')}`,
    );
    stack = await startLocalStack({
      root: STACK_ROOT,
      persistent: false,
      oldMajor: 15,
      newMajor: 15,
      postgresSettings: POSTGRES_SETTINGS,
      log: (message) => logger.info(message),
    });
    if (interruption.signal.aborted) return 130;
    const bench: Bench = {
      options,
      stack,
      client: new Client({
        connection: stack.temporal.environment.connection,
        namespace: stack.temporal.namespace,
      }),
      signal: interruption.signal,
    };
    const source = await seedSource(bench);
    if (options.load.oldApart) checkCpuPlacementPossible();
    return options.mode === 'load' ? await runUnderLoad(bench, source) : await runThroughput(bench, source);
  } finally {
    await stopStack();
  }
}

function run(): void {
  let options: BenchOptions;
  try {
    options = readBenchOptions();
  } catch (err) {
    logger.error((err as Error).message);
    process.exit(2);
  }
  main(options).then(
    (code) => process.exit(code),
    (err: unknown) => {
      // Interrupted: what failed was cut off on purpose.
      if (interruption.signal.aborted) process.exit(130);
      logger.error(
        err instanceof OperatorError ? err.message : `the benchmark failed: ${redactSecrets(String(err))}`,
      );
      process.exit(1);
    },
  );
}

run();
