#!/usr/bin/env node
// `npm run bench:migration`: a whole migration under a steady write load through routers (a
// benchmark that prints figures, never a timed test). On the embedded default (a Temporal dev server
// and PostgreSQL 15 → 17 with default durability) it seeds `public.orders` on old, starts two routers
// and a paced load of BENCH_MIGRATION_WRITES writes per second (default 500; single-row updates,
// each followed by a read of the same row), measures the load at `off` first, then runs the
// migration workflow without approvals: dual_write + backfill + verification, shadow with the query
// benchmark, live at 5%, 50%, 100%, the write switch, complete, a short soak, retire. It prints:
//   - write latency per phase of the migration, against the same load at `off` (the peer);
//   - the write switch: how long the fence was up and the longest write that met it (goal: 250 ms);
//   - verification rows/s against backfill rows/s (goal: at least 1×);
//   - the query benchmark's p50/p95 per query and the ratios new/old.
//   - the cores each process kept busy per phase (old's and new's PostgreSQL with their backends,
//     this process: routers, worker and load, the Temporal server), so that what limits the ratios shows;
//   - a writer that bypasses the routers (2 sessions on old as the application's role, paced at
//     BENCH_OUTSIDE_WRITES, default 200 writes/s): its rate and latency per phase against `off`;
//     after the switch old's guard refuses it by design (counted as refused).
// Settings (environment): BENCH_MIGRATION_ROWS rows seeded (default 200000),
// BENCH_MIGRATION_WRITES writes per second (default 500). Ctrl-C stops the servers.
import path from 'node:path';
import { Client } from '@temporalio/client';
import { quoteTable } from '../db/sql';
import { compareTables } from '../db/verifier';
import { MigrationControl, startMigration } from '../client/migrations';
import { OperatorError } from '../model/errors';
import { parseMigrationConfig, parseSiteConfig } from '../config/load';
import { startLocalStack, type LocalStack } from '../provision/local-stack';
import { dataDir } from '../provision/project-paths';
import { sampleTableDdl, seedSampleRows } from '../provision/sample-table';
import { createRouter, type MigrationRouter } from '../router';
import { createMigrationWorker } from '../worker/create-worker';
import { createLogger } from '../db/logger';
import { installRuntime } from '../worker/runtime';
import { migrationWorkflowId } from '../model/ids';
import type { MigrationStatus } from '../model/messages';
import type { LatencyThrottleState } from '../model/latency-throttle';
import { backfillProgressQuery } from '../workflows/messages';
import { wholeNumber } from './benchmark/options';
import { percentile } from './benchmark/write-load';
import { formatCount, formatTable } from './benchmark/report';
import { writeBenchResults } from './benchmark/results';
import { toleratingPool } from '../db/pools';
import { coresBusy, describeCores, sampleStackCpu, type CpuSeconds } from './benchmark/cpu';

const log = createLogger({ name: 'bench-migration' });
const TABLE = { schema: 'public', table: 'orders' };
const NAME = quoteTable(TABLE);
const MIGRATION = 'bench';
/** Paced loops of the application's load through the routers. */
const ROUTED_LOOPS = 10;
/** Sessions of the writer that bypasses the routers (as pgbench with 2 clients). */
const OUTSIDE_LOOPS = 2;
/** SQLSTATE of old's write guard refusing a write. */
const READ_ONLY = '25006';

interface WriteSample {
  startedAt: number;
  ms: number;
  failed: boolean;
  /** Refused by old's write guard (after the switch old takes writes from the migration only). */
  refused: boolean;
}

/** Where a phase starts, and the CPU seconds each process had used by then. */
interface Mark {
  at: number;
  label: string;
  cpu: CpuSeconds | undefined;
}

/** Who writes: the routers, or a pool on old that bypasses them. */
type Writer = { query(text: string, values?: unknown[]): Promise<unknown> };

/**
 * Paced single-row updates through the writers, by turns, `loops` at once; with `readBack` each is
 * followed by a read of the row through the same writer.
 */
function startLoad<W extends Writer>(
  writers: W[],
  writesPerSecond: number,
  rows: number,
  options: { loops: number; readBack?: (writer: W, id: number) => Promise<unknown>; what: string },
) {
  const samples: WriteSample[] = [];
  let stopping = false;
  const interval = (1000 * options.loops) / writesPerSecond;
  const loops = Array.from({ length: options.loops }, async (_, w) => {
    const writer = writers[w % writers.length]!;
    const begin = Date.now() + (interval * w) / options.loops;
    let n = w * 7919 + 1;
    for (let k = 0; !stopping; k++) {
      const due = begin + k * interval;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      n = (n * 48271) % 2147483647;
      const id = 1 + (n % rows);
      const startedAt = Date.now();
      const started = process.hrtime.bigint();
      let failed = false;
      let refused = false;
      try {
        await writer.query(`UPDATE ${NAME} SET note = $1 WHERE id = $2`, [`bench ${k}`, id]);
      } catch (err) {
        refused = (err as { code?: string }).code === READ_ONLY;
        failed = !refused;
        if (failed) log.warn({ err }, `a write of ${options.what} failed`);
      }
      samples.push({ startedAt, ms: Number(process.hrtime.bigint() - started) / 1e6, failed, refused });
      if (options.readBack === undefined) continue;
      await options
        .readBack(writer, id)
        .catch((err: unknown) => log.warn({ err }, `a read of ${options.what} failed`));
    }
  });
  return {
    samples,
    stop: async () => {
      stopping = true;
      await Promise.all(loops);
    },
  };
}

function summarize(samples: WriteSample[], from: number, to: number) {
  const inside = samples.filter((s) => s.startedAt >= from && s.startedAt < to);
  const done = inside.filter((s) => !s.failed && !s.refused);
  const ms = done.map((s) => s.ms).sort((a, b) => a - b);
  return {
    writes: done.length,
    perSecond: done.length / Math.max(0.001, (to - from) / 1000),
    failed: inside.filter((s) => s.failed).length,
    refused: inside.filter((s) => s.refused).length,
    p50: percentile(ms, 50),
    p99: percentile(ms, 99),
    max: ms.length === 0 ? NaN : ms[ms.length - 1]!,
  };
}

const fixed = (value: number, digits = 2) => (Number.isFinite(value) ? value.toFixed(digits) : '-');

async function main(): Promise<number> {
  const rows = wholeNumber(process.env, 'BENCH_MIGRATION_ROWS', 200_000, 1, 1_000_000_000);
  const writesPerSecond = wholeNumber(process.env, 'BENCH_MIGRATION_WRITES', 500, 1, 100_000);
  const outsideWritesPerSecond = wholeNumber(process.env, 'BENCH_OUTSIDE_WRITES', 200, 1, 100_000);
  installRuntime(log, []);
  let stack: LocalStack | undefined;
  const interrupt = () => {
    interrupted = true;
    void (stack?.stop() ?? Promise.resolve()).then(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  // A connection the stopping servers end, after Ctrl-C, is the interruption: never a crash.
  process.on('uncaughtException', (err) => {
    if (interrupted) return;
    log.error(`the benchmark failed: ${String(err)}`);
    void (stack?.stop() ?? Promise.resolve()).finally(() => process.exit(1));
  });
  const routers: MigrationRouter[] = [];
  try {
    stack = await startLocalStack({
      root: path.join(dataDir, 'bench-migration'),
      persistent: false,
      oldMajor: 15,
      newMajor: 17,
      log: (message) => log.info(message),
    });
    const env = { ...process.env, ...stack.env };
    const admin = {
      old: toleratingPool({ connectionString: stack.env.OLD_DATABASE_URL, max: 2 }),
      new: toleratingPool({ connectionString: stack.env.NEW_DATABASE_URL, max: 2 }),
    };
    await admin.old.query(sampleTableDdl(TABLE));
    await admin.new.query(sampleTableDdl(TABLE));
    await seedSampleRows(admin.old, TABLE, rows);
    await admin.old.query(`CREATE INDEX ON ${NAME} (customer_id)`);
    await admin.new.query(`CREATE INDEX ON ${NAME} (customer_id)`);
    await admin.old.query(`VACUUM ANALYZE ${NAME}`);
    log.info(`seeded ${formatCount(rows)} rows on old`);

    const site = parseSiteConfig({ temporal: { taskQueue: 'bench-migration' } });
    const worker = await createMigrationWorker(site, env);
    const client = new Client({ connection: stack.temporal.environment.connection });
    for (let i = 0; i < 2; i++) {
      routers.push(
        await createRouter({
          migration: MIGRATION,
          // The application connects as its own role, not as the migration's.
          old: { connectionString: stack.old.appUrl, max: 8 },
          new: { connectionString: stack.new.appUrl, max: 8 },
          logger: createLogger({ name: 'router', level: 'warn' }),
          stageWatcher: { pollMs: 500, heartbeatMs: 1000 },
          reconciliation: { client },
        }),
      );
    }
    const control = new MigrationControl(client, MIGRATION);
    const marks: Mark[] = [];
    const running = stack;
    const cpuNow = () => sampleStackCpu(running);
    let status: MigrationStatus | undefined;
    const load = startLoad(routers, writesPerSecond, rows, {
      loops: ROUTED_LOOPS,
      readBack: (router, id) =>
        router.query({ text: `SELECT * FROM ${NAME} WHERE id = $1`, values: [id], routingKey: id }),
      what: 'the load',
    });
    // The application's role, straight on old: capture logs its writes and reconciliation carries
    // them; after the switch old's guard refuses it (counted apart, not as failures).
    const outsidePool = toleratingPool({ connectionString: stack.old.appUrl, max: OUTSIDE_LOOPS });
    const outside = startLoad([outsidePool], outsideWritesPerSecond, rows, {
      loops: OUTSIDE_LOOPS,
      what: 'the outside writer',
    });
    let report: ReturnType<typeof formatReport> | undefined;
    try {
      report = await worker.runUntil(
        (async () => {
          const baselineFrom = Date.now();
          const baselineCpu = cpuNow();
          await new Promise((resolve) => setTimeout(resolve, 5000));
          marks.push({ at: baselineFrom, label: 'off (peer)', cpu: baselineCpu });
          const config = parseMigrationConfig({
            name: MIGRATION,
            tables: ['public.orders'],
            cutover: { readSteps: [5, 50, 100], stepSoak: '3s', soak: '3s', approvals: [] },
            verification: { settle: 500 },
            queryBenchmark: {
              queries: [
                { name: 'order by id', sql: `SELECT * FROM ${NAME} WHERE id = 4242` },
                { name: 'orders of a customer', sql: `SELECT * FROM ${NAME} WHERE customer_id = 4242` },
                { name: 'count by status', sql: `SELECT status, count(*) FROM ${NAME} GROUP BY status` },
              ],
              topStatements: 0,
              runs: 20,
            },
          });
          marks.push({ at: Date.now(), label: 'migration', cpu: cpuNow() });
          await startMigration(client, config, worker.taskQueue);
          let lastStep = '';
          for (;;) {
            status = await control.status();
            if (status.error !== null) throw new Error(`the migration failed: ${status.error}`);
            if (status.step !== lastStep) {
              marks.push({ at: Date.now(), label: status.step, cpu: cpuNow() });
              lastStep = status.step;
            }
            if (status.held?.kind === 'retire') break;
            if (status.held !== null) throw new Error(`the migration holds: ${status.held.reason}`);
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
          marks.push({ at: Date.now(), label: 'end', cpu: cpuNow() });
          await load.stop();
          await outside.stop();
          // Reverse sync brings the load's last writes on new to old; then the sides must be equal.
          let comparison = await compareTables(admin.new, admin.old, TABLE, ['id']);
          for (let i = 0; i < 60 && comparison.differenceCount > 0; i++) {
            await new Promise((resolve) => setTimeout(resolve, 500));
            comparison = await compareTables(admin.new, admin.old, TABLE, ['id']);
          }
          await control.approve('benchmark');
          await control.result();
          const backfillHandle = client.workflow.getHandle(
            `${migrationWorkflowId(MIGRATION)}/backfill-public.orders`,
          );
          const backfill = await backfillHandle.describe();
          const brake = (await backfillHandle.query(backfillProgressQuery)).latency ?? null;
          const backfillSeconds =
            ((backfill.closeTime?.getTime() ?? Date.now()) - backfill.startTime.getTime()) / 1000;
          return formatReport(status, load.samples, outside.samples, marks, {
            rows,
            writesPerSecond,
            outsideWritesPerSecond,
            backfillSeconds,
            brake,
            equal: comparison.differenceCount === 0 && comparison.rowsNew === comparison.rowsOld,
          });
        })(),
      );
    } finally {
      await load.stop();
      await outside.stop();
      await outsidePool.end();
      await Promise.all(routers.map((router) => router.end()));
      await admin.old.end();
      await admin.new.end();
    }
    if (report === undefined) throw new Error('the migration ended without a report');
    process.stdout.write(report.text);
    process.stdout.write(`figures: ${writeBenchResults('migration', report.figures)}\n`);
    return 0;
  } finally {
    await stack?.stop();
  }
}

function formatReport(
  status: MigrationStatus,
  samples: WriteSample[],
  outsideSamples: WriteSample[],
  marks: Mark[],
  run: {
    rows: number;
    writesPerSecond: number;
    outsideWritesPerSecond: number;
    backfillSeconds: number;
    brake: LatencyThrottleState | null;
    equal: boolean;
  },
): { text: string; figures: MigrationBenchFigures } {
  const lines: string[] = [];
  const table = status.tables[0]!;
  const figuresOut: MigrationBenchFigures = {
    rows: run.rows,
    writesPerSecondAsked: run.writesPerSecond,
    newEqualsOld: run.equal,
    phases: [],
    outsideWriter: { writesPerSecondAsked: run.outsideWritesPerSecond, phases: [] },
    liveFence: null,
    writeSwitch: null,
    backfill: {
      rows: table.rowsCopied,
      seconds: run.backfillSeconds,
      rowsPerSecond: table.rowsCopied / run.backfillSeconds,
    },
    verification: null,
    brake: null,
    queries: status.queryBenchmark?.queries ?? [],
  };
  lines.push('');
  lines.push(
    `Migration of ${formatCount(run.rows)} rows (PostgreSQL 15 → 17, fsync on), ${run.writesPerSecond} writes/s asked through 2 routers and ${run.outsideWritesPerSecond} by a writer bypassing them; new equals old at the end: ${run.equal ? 'yes' : 'NO'}`,
  );
  lines.push('');
  const phases = marks
    .slice(0, -1)
    .map((mark, i) => ({ ...mark, to: marks[i + 1]!.at, cpuTo: marks[i + 1]!.cpu }));
  const peer = summarize(samples, phases[0]!.at, phases[0]!.to);
  lines.push(
    formatTable(
      ['phase', 's', 'writes/s', 'failed', 'p50 ms', 'p99 ms', 'max ms', 'p50 vs off', 'p99 vs off'],
      phases.map((phase) => {
        const figures = summarize(samples, phase.at, phase.to);
        figuresOut.phases.push({
          phase: phase.label,
          seconds: (phase.to - phase.at) / 1000,
          ...figures,
          p50OverOff: figures.p50 / peer.p50,
          p99OverOff: figures.p99 / peer.p99,
          cpuCores: coresBusy(phase.cpu, phase.cpuTo, (phase.to - phase.at) / 1000) ?? null,
        });
        return [
          phase.label,
          fixed((phase.to - phase.at) / 1000, 1),
          fixed(figures.perSecond, 0),
          String(figures.failed),
          fixed(figures.p50),
          fixed(figures.p99),
          fixed(figures.max),
          `${fixed(figures.p50 / peer.p50)}×`,
          `${fixed(figures.p99 / peer.p99)}×`,
        ];
      }),
    ),
  );
  lines.push('');
  lines.push(
    'Cores each process kept busy per phase (2 on this machine; "worker+load" is this process: routers, worker, load):',
  );
  for (const phase of figuresOut.phases) {
    if (phase.cpuCores !== null) lines.push(`  ${phase.phase}: ${describeCores(phase.cpuCores)}`);
  }
  lines.push('');
  const outsidePeer = summarize(outsideSamples, phases[0]!.at, phases[0]!.to);
  lines.push(
    `The writer that bypasses the routers (${OUTSIDE_LOOPS} sessions on old as the application's role; goal: at least 80 % of its rate at off until the switch, after which old refuses it by design):`,
  );
  lines.push(
    formatTable(
      ['phase', 'writes/s', 'vs off', 'failed', 'refused', 'p50 ms', 'p99 ms', 'p50 vs off'],
      phases.map((phase) => {
        const figures = summarize(outsideSamples, phase.at, phase.to);
        figuresOut.outsideWriter.phases.push({
          phase: phase.label,
          ...figures,
          rateOverOff: figures.perSecond / outsidePeer.perSecond,
          p50OverOff: figures.p50 / outsidePeer.p50,
        });
        return [
          phase.label,
          fixed(figures.perSecond, 0),
          `${fixed((100 * figures.perSecond) / outsidePeer.perSecond, 0)} %`,
          String(figures.failed),
          String(figures.refused),
          fixed(figures.p50),
          fixed(figures.p99),
          `${fixed(figures.p50 / outsidePeer.p50)}×`,
        ];
      }),
    ),
  );
  lines.push('');
  /** The routed writes that were under way while a fence was up from `from` to `to`, and the longest. */
  const metFence = (from: number, to: number) => {
    const met = samples.filter((s) => s.startedAt <= to && s.startedAt + s.ms >= from);
    return { met, longest: Math.max(0, ...met.map((s) => s.ms)) };
  };
  const intoLive = status.liveFences?.[0];
  if (intoLive !== undefined) {
    const { fencedMs } = intoLive;
    const { met, longest } = metFence(intoLive.at - fencedMs, intoLive.at);
    figuresOut.liveFence = { fencedMs, writesMet: met.length, longestWriteMs: longest };
    lines.push(
      `Into live: fence up ${fencedMs} ms (workflow time) until every router's trailing mirrors landed; ${met.length} writes met it, the longest took ${fixed(longest)} ms.`,
    );
  }
  const forward = status.switches.find((s) => s.direction === 'to-new' && s.switched);
  if (forward !== undefined) {
    const { met, longest } = metFence(forward.at - forward.fencedMs, forward.at);
    figuresOut.writeSwitch = {
      fencedMs: forward.fencedMs,
      changesDrained: forward.changesDrained,
      writesMet: met.length,
      longestWriteMs: longest,
      stepsMs: forward.stepsMs ?? {},
    };
    lines.push(
      `Write switch: fence up ${forward.fencedMs} ms (workflow time), ${forward.changesDrained} changes drained; ${met.length} writes met it, the longest took ${fixed(longest)} ms (goal: at most 250 ms; ${longest <= 250 ? 'met' : 'NOT met'}).`,
    );
    lines.push(
      `  where the fence time went (ms): ${Object.entries(forward.stepsMs ?? {})
        .map(([step, ms]) => `${step} ${ms}`)
        .join(', ')}`,
    );
  }
  const verification = table.verification;
  const backfillRate = table.rowsCopied / run.backfillSeconds;
  if (verification !== null && verification.rowsPerSecond !== null) {
    figuresOut.verification = {
      rows: verification.rowsFrom,
      rowsPerSecond: verification.rowsPerSecond,
      overBackfill: verification.rowsPerSecond / backfillRate,
    };
    lines.push(
      `Backfill: ${formatCount(table.rowsCopied)} rows in ${fixed(run.backfillSeconds, 1)} s = ${formatCount(backfillRate)} rows/s. Verification: ${formatCount(verification.rowsFrom)} rows at ${formatCount(verification.rowsPerSecond)} rows/s = ${fixed(verification.rowsPerSecond / backfillRate)}× the backfill (goal: at least 1×).`,
    );
  }
  const { brake } = run;
  figuresOut.brake = brake;
  if (brake !== null) {
    const baseline = [
      brake.baseline.routersMs === null ? null : `routers' p99 ${fixed(brake.baseline.routersMs)} ms`,
      `probe p99 ${fixed(brake.baseline.probeMs)} ms`,
      brake.baseline.statementsMs == null
        ? null
        : `the application's statements mean ${fixed(brake.baseline.statementsMs)} ms`,
    ].filter((part) => part !== null);
    lines.push(
      `Latency brake: baseline ${baseline.join(', ')}; ${brake.decreases} cuts, ${brake.increases} steps up; last reading ${brake.last === null ? 'none' : `${fixed(brake.last.ms)} ms by the ${brake.last.by} against ${fixed(brake.last.targetMs)} ms`}${brake.reason === null ? '' : `; last decision: ${brake.reason}`}`,
    );
  } else {
    lines.push('Latency brake: off, or no baseline.');
  }
  lines.push('');
  lines.push(
    formatTable(
      ['query', 'old p50', 'new p50', 'p50 new/old', 'old p95', 'new p95', 'p95 new/old'],
      (status.queryBenchmark?.queries ?? []).map((query) => [
        query.name,
        fixed(query.old.p50, 3),
        fixed(query.new.p50, 3),
        `${fixed(query.ratioP50)}×`,
        fixed(query.old.p95, 3),
        fixed(query.new.p95, 3),
        `${fixed(query.ratioP95)}×`,
      ]),
    ),
  );
  lines.push('');
  return { text: `${lines.join('\n')}\n`, figures: figuresOut };
}

/** What bench:migration writes to .data/bench-results/ (besides the text it prints). */
interface MigrationBenchFigures {
  rows: number;
  writesPerSecondAsked: number;
  newEqualsOld: boolean;
  phases: Array<
    {
      phase: string;
      seconds: number;
      p50OverOff: number;
      p99OverOff: number;
      /** Cores each process kept busy on average over the phase (null where /proc cannot tell). */
      cpuCores: CpuSeconds | null;
    } & ReturnType<typeof summarize>
  >;
  /** The writer that bypasses the routers, per phase: `rateOverOff` is its goal (at least 0.8 until the switch). */
  outsideWriter: {
    writesPerSecondAsked: number;
    phases: Array<{ phase: string; rateOverOff: number; p50OverOff: number } & ReturnType<typeof summarize>>;
  };
  /** The fence before reads went to new, until the mirrors that trailed their writes landed. */
  liveFence: { fencedMs: number; writesMet: number; longestWriteMs: number } | null;
  writeSwitch: {
    fencedMs: number;
    changesDrained: number;
    writesMet: number;
    longestWriteMs: number;
    stepsMs: Record<string, number>;
  } | null;
  backfill: { rows: number; seconds: number; rowsPerSecond: number };
  /** The backfill's latency brake at its end: baseline, decisions, last reading (null when off). */
  brake: LatencyThrottleState | null;
  verification: { rows: number; rowsPerSecond: number; overBackfill: number } | null;
  queries: NonNullable<MigrationStatus['queryBenchmark']>['queries'];
}

/** Set by Ctrl-C: what fails while the servers stop is the interruption, not a failure to report. */
let interrupted = false;

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (interrupted) return; // the interrupt handler exits once the servers have stopped
    log.error(err instanceof OperatorError ? err.message : `the benchmark failed: ${String(err)}`);
    process.exit(1);
  },
);
