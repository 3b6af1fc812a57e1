#!/usr/bin/env node
// `npm run bench:router`: the latency the router adds to a single-row read and a single-row write,
// in each stage, against direct `pg` on the same servers in the same run (a benchmark that prints
// figures, never a timed test).
//
// It starts two throwaway embedded PostgreSQL 15 servers with default durability (fsync and
// synchronous_commit on, as a real database has them), seeds `public.orders` on both (the sample
// table), installs change capture on old as the migration does before `dual_write`, then for each
// stage measures, alternating in blocks of ten operations so drift hits both alike (the router's
// mirrors that no write waited for finish, untimed, before the plain pool's block):
//   direct: `SELECT * FROM orders WHERE id = $1` and `UPDATE orders SET note = $1 WHERE id = $2`
//           through a plain pg.Pool on the side the stage reads or writes (in `off`, pg on the
//           router's own sessions: see main);
//   router: the same statements through the router.
// Stages: off, dual_write (read and write; writes also spaced: one operation per turn, so each
// write's mirror is done before the next; and paced at a steady 500 writes/s in blocks of 50, so
// the mirrors run between the writes as under an application's load), shadow (sample 5%), live at 50% (reads, and writes, which
// wait for their mirrors), and dual_write
// with new stopped (writes). It prints p50 and p99 of each and the ratios router/direct, with the
// goals: off at most 1.05x, a dual write at most 1.5x at p50, with new down at most 1.2x at p99.
//
// Settings (environment): BENCH_ROUTER_OPS operations per measurement (default 10000),
// BENCH_ROUTER_ROWS rows seeded (default 10000). Ctrl-C stops the servers.
import { rmSync } from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { createActivities, prepareWithoutWorkflow } from '../activities';
import type { TableRef } from '../model/tables';
import { ConnectionPools, toleratingPool } from '../db/pools';
import { quoteTable } from '../db/sql';
import { OperatorError } from '../model/errors';
import { dataDir } from '../provision/project-paths';
import { startEmbeddedCluster, type EmbeddedCluster } from '../provision/postgres';
import { sampleTableDdl, seedSampleRows } from '../provision/sample-table';
import { createRouter, type MigrationRouter } from '../router';
import { setStage } from '../db/stage-store';
import type { Stage } from '../model/stages';
import { createLogger } from '../db/logger';
import { wholeNumber } from './benchmark/options';
import { percentile } from './benchmark/write-load';
import { formatTable } from './benchmark/report';
import { writeBenchResults } from './benchmark/results';
import { cpuPerMillionRows, sampleCpu, type CpuProcesses, type CpuSeconds } from './benchmark/cpu';

const log = createLogger({ name: 'bench-router' });
const TABLE: TableRef = { schema: 'public', table: 'orders' };
const NAME = quoteTable(TABLE);
/** Operations in a row on one runner before the other takes its turn. */
const BLOCK = 10;

type Runner = {
  query(text: string, values: unknown[]): Promise<unknown>;
  /** The router's: waits for the mirrors its writes did not wait for. */
  mirrorsSettled?(): Promise<void>;
};
type Operation = 'read' | 'write';

interface Figures {
  p50: number;
  p99: number;
}

/** Writes paced this far apart (ms) in the paced row: a steady 500 writes/s. */
const PACED_MS = 2;
/** Writes in a row on one runner in the paced row (100 ms of the steady rate). */
const PACED_BLOCK = 50;

/**
 * Runs `ops` operations on each runner, in alternating blocks, one at a time (or, with `pacedMs`,
 * each started that many ms after the one before it started, if it has ended); latencies in ms.
 */
async function measure(
  runners: Runner[],
  operation: Operation,
  ops: number,
  rows: number,
  seed: number,
  block = BLOCK,
  pacedMs = 0,
): Promise<Figures[]> {
  const latencies = runners.map(() => [] as number[]);
  let n = seed;
  for (let round = 0; round < Math.ceil(ops / block); round++) {
    for (const [i, runner] of runners.entries()) {
      const blockStart = performance.now();
      for (let k = 0; k < block; k++) {
        const wait = blockStart + k * pacedMs - performance.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        n = (n * 48271) % 2147483647;
        const id = 1 + (n % rows);
        const started = process.hrtime.bigint();
        if (operation === 'read') await runner.query(`SELECT * FROM ${NAME} WHERE id = $1`, [id]);
        else await runner.query(`UPDATE ${NAME} SET note = $1 WHERE id = $2`, [`bench ${n}`, id]);
        latencies[i]!.push(Number(process.hrtime.bigint() - started) / 1e6);
      }
      // Untimed: mirrors still running after the router's block (dual_write answers before them)
      // finish before the plain pool's block, so it is not charged with them.
      await runner.mirrorsSettled?.();
    }
  }
  return latencies.map((values) => {
    values.sort((a, b) => a - b);
    return { p50: percentile(values, 50), p99: percentile(values, 99) };
  });
}

/**
 * CPU per write, in ms, of each server and of this process (the router's share): `writes` writes
 * one at a time in one block, as measure() runs them.
 */
async function cpuPerWrite(
  runner: Runner,
  processes: CpuProcesses,
  writes: number,
  rows: number,
): Promise<Omit<CpuSeconds, 'temporal'> | undefined> {
  const before = sampleCpu(processes);
  await measure([runner], 'write', writes, rows, 5, writes);
  // Seconds per million writes are microseconds per write.
  const perMillion = cpuPerMillionRows(before, sampleCpu(processes), writes);
  if (perMillion === undefined) return undefined;
  return {
    oldPostgres: perMillion.oldPostgres / 1000,
    newPostgres: perMillion.newPostgres / 1000,
    worker: perMillion.worker / 1000,
  };
}

/** Writes the router mirrored, and the syncs on new that carried them (a batch carries several). */
async function mirrorCounts(router: MigrationRouter): Promise<{ writes: number; syncs: number }> {
  const histogram = await router.metrics.registry.getSingleMetric('live_migrate_router_query_seconds')?.get();
  const syncs = histogram?.values.find(
    (value) =>
      (value as { metricName?: string }).metricName?.endsWith('_count') === true &&
      value.labels.side === 'new' &&
      value.labels.kind === 'mirror',
  );
  return { writes: await router.metrics.count('mirrors', 'mirrored'), syncs: syncs?.value ?? 0 };
}

interface Row {
  stage: string;
  operation: Operation;
  direct: Figures;
  router: Figures;
  goal: string;
}

async function main(): Promise<number> {
  const ops = wholeNumber(process.env, 'BENCH_ROUTER_OPS', 10_000, 1, 10_000_000);
  const rows = wholeNumber(process.env, 'BENCH_ROUTER_ROWS', 10_000, 1, 1_000_000_000);
  const root = path.join(dataDir, 'bench-router');
  rmSync(root, { recursive: true, force: true });
  const clusters: EmbeddedCluster[] = [];
  const stopAll = async () => {
    await Promise.all(clusters.map((cluster) => cluster.stop().catch(() => undefined)));
  };
  const interrupt = () => {
    interrupted = true;
    void stopAll().then(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  let router: MigrationRouter | undefined;
  const direct: Record<'old' | 'new', pg.Pool> = {} as never;
  try {
    for (const name of ['old', 'new'] as const) {
      clusters.push(
        await startEmbeddedCluster({
          name,
          major: 15,
          dataDir: path.join(root, name),
          log: (m) => log.info(m),
        }),
      );
    }
    const [oldCluster, newCluster] = clusters as [EmbeddedCluster, EmbeddedCluster];
    // An idle connection lost as a server stops must not take the benchmark down.
    direct.old = toleratingPool({ connectionString: oldCluster.url, max: 4 });
    direct.new = toleratingPool({ connectionString: newCluster.url, max: 4 });
    for (const pool of [direct.old, direct.new]) {
      await pool.query(sampleTableDdl(TABLE));
      await seedSampleRows(pool, TABLE, rows);
      await pool.query(`VACUUM ANALYZE ${NAME}`);
    }
    const migrationPools = new ConnectionPools({
      old: { name: 'old', connectionString: oldCluster.url, source: 'bench', display: 'old' },
      new: { name: 'new', connectionString: newCluster.url, source: 'bench', display: 'new' },
    });
    const migration = 'bench-router';
    await prepareWithoutWorkflow(createActivities({ pools: migrationPools }), migration, [TABLE]);
    await migrationPools.end();
    router = await createRouter({
      migration,
      old: { connectionString: oldCluster.url, max: 4 },
      new: { connectionString: newCluster.url, max: 4, connectionTimeoutMillis: 1000 },
      shadow: { sampleRate: 0.05 },
      logger: createLogger({ name: 'router', level: 'error' }),
      stageWatcher: { pollMs: 100 },
    });
    const follow = async (stage: Stage, readPercent?: number) => {
      const state = await setStage(direct.old, migration, { stage, readPercent });
      while (router!.stage.version < state.version) await new Promise((resolve) => setTimeout(resolve, 20));
    };
    const results: Row[] = [];
    const run = async (
      stage: string,
      operation: Operation,
      side: 'old' | 'new',
      goal: string,
      block?: number,
      baseline: Runner = direct[side],
      pacedMs?: number,
    ) => {
      // Warm both: connections, plans, the router's statement cache and the mirror's staging tables.
      await measure([baseline, router!], operation, 200, rows, 7, block, pacedMs);
      const [d, r] = await measure(
        [baseline, router!],
        operation,
        pacedMs === undefined ? ops : Math.min(ops, 5000),
        rows,
        11 + results.length,
        block,
        pacedMs,
      );
      results.push({ stage, operation, direct: d!, router: r!, goal });
      log.info(
        `${stage} ${operation}: direct p50 ${d!.p50.toFixed(3)} ms, router p50 ${r!.p50.toFixed(3)} ms`,
      );
    };
    // In `off` the direct figure is pg on the router's own sessions of old (checked out of its pool
    // as pg.Pool.query does): what the router adds to a statement, apart from which server process
    // serves it. Two sessions on this 2-core machine differed by 50–75 µs at p50 (which core each
    // backend shares with whom), more than the router adds. From dual_write on, those sessions
    // have the capture note their keys, so the direct figure there is a pool of its own.
    const onRouterSessions: Runner = {
      async query(text, values) {
        const session = await router!.sessionOn('old');
        try {
          return await session.query(text, values);
        } finally {
          session.release();
        }
      },
    };
    await follow('off');
    await run('off', 'read', 'old', 'at most 1.05x', undefined, onRouterSessions);
    await run('off', 'write', 'old', 'at most 1.05x', undefined, onRouterSessions);
    await follow('dual_write');
    await run('dual_write', 'read', 'old', '');
    // How many mirrors carried those writes (those that came while one ran went in one batch).
    const mirroredBefore = await mirrorCounts(router);
    await run('dual_write', 'write', 'old', 'p50 at most 1.5x');
    const mirroredAfter = await mirrorCounts(router);
    const dualWriteMirrors = {
      writes: mirroredAfter.writes - mirroredBefore.writes,
      syncs: mirroredAfter.syncs - mirroredBefore.syncs,
    };
    // The same writes one by one, each one's mirror done before the next operation: what a write
    // costs when its mirror does not share this machine's two cores with the writes that follow.
    await run('dual_write, spaced', 'write', 'old', '', 1);
    // A steady 500 writes/s: the mirrors (each waiting up to mirrorDelayMs for company) run between
    // the writes, as under an application's steady load, not after a block.
    await run('dual_write, 500/s', 'write', 'old', '', PACED_BLOCK, direct.old, PACED_MS);
    await follow('shadow');
    await run('shadow (5%)', 'read', 'old', '');
    await follow('live', 50);
    await run('live 50%', 'read', 'old', '');
    // From shadow on a write answers once its mirror landed on new: the write and its mirror, in a row.
    await run('live 50%', 'write', 'old', '');
    // What each write costs each process in CPU: the plain pool's, and the router's with its mirror.
    const processes: CpuProcesses = {
      oldPostmaster: oldCluster.postmasterPid,
      newPostmaster: newCluster.postmasterPid,
      temporal: 0,
    };
    const cpuWrites = Math.min(ops, 2000);
    const cpu = {
      direct: await cpuPerWrite(direct.old, processes, cpuWrites, rows),
      router: await cpuPerWrite(router, processes, cpuWrites, rows),
    };
    await follow('dual_write');
    await newCluster.stop();
    await run('dual_write, new down', 'write', 'old', 'p99 at most 1.2x');
    const ratio = (a: number, b: number) => `${(a / b).toFixed(2)}x`;
    const table = formatTable(
      [
        'stage',
        'op',
        'direct p50',
        'router p50',
        'ratio p50',
        'direct p99',
        'router p99',
        'ratio p99',
        'goal',
      ],
      results.map((row) => [
        row.stage,
        row.operation,
        `${row.direct.p50.toFixed(3)} ms`,
        `${row.router.p50.toFixed(3)} ms`,
        ratio(row.router.p50, row.direct.p50),
        `${row.direct.p99.toFixed(3)} ms`,
        `${row.router.p99.toFixed(3)} ms`,
        ratio(row.router.p99, row.direct.p99),
        row.goal,
      ]),
      [0, 1, 8],
    );
    const mirrored = await router.metrics.count('mirrors', 'mirrored');
    const skipped = await router.metrics.count('mirrors', 'circuit_open');
    process.stdout.write(
      `\nrouter latency, ${ops} operations each, one at a time, PostgreSQL 15 both sides (fsync on), ${rows} rows\n${table}\n` +
        `mirrors: ${mirrored} mirrored, ${skipped} skipped while new was down (circuit open); ` +
        `shadow reads compared: ${(await router.metrics.count('shadow', 'match')) + (await router.metrics.count('shadow', 'mismatch'))}\n` +
        `dual_write writes: ${dualWriteMirrors.writes} mirrored in ${dualWriteMirrors.syncs} syncs on new\n` +
        'The "live 50%" direct figure is old; half of the router\'s reads there ran on new.\n' +
        (cpu.direct === undefined || cpu.router === undefined
          ? ''
          : `CPU per write in live, ${cpuWrites} writes one at a time (ms; old / new / this process): ` +
            `direct ${cpu.direct.oldPostgres.toFixed(3)} / ${cpu.direct.newPostgres.toFixed(3)} / ${cpu.direct.worker.toFixed(3)}, ` +
            `router with its mirror ${cpu.router.oldPostgres.toFixed(3)} / ${cpu.router.newPostgres.toFixed(3)} / ${cpu.router.worker.toFixed(3)}\n`),
    );
    const written = writeBenchResults('router', {
      operations: ops,
      rows,
      results: results.map((row) => ({
        ...row,
        ratioP50: row.router.p50 / row.direct.p50,
        ratioP99: row.router.p99 / row.direct.p99,
      })),
      mirrors: { mirrored, skippedWhileNewDown: skipped, dualWrite: dualWriteMirrors },
      cpuMsPerLiveWrite: cpu,
    });
    process.stdout.write(`figures: ${written}\n`);
    return 0;
  } finally {
    await router?.end();
    await Promise.all(Object.values(direct).map((pool) => pool.end().catch(() => undefined)));
    await stopAll();
    rmSync(root, { recursive: true, force: true });
  }
}

/** Set by Ctrl-C: what fails while the servers stop is the interruption, not a failure to report. */
let interrupted = false;

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (interrupted) return; // the interrupt handler exits once the servers have stopped
    process.stderr.write(
      `${err instanceof OperatorError ? err.message : `the benchmark failed: ${String(err)}`}\n`,
    );
    process.exit(err instanceof OperatorError ? 2 : 1);
  },
);
