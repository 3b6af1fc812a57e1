// The latency brake's probe, in a thread of its own (latency-probes.ts starts it): runs the operator's
// probe query on one session every few tens of milliseconds and posts each run's time. Its own event
// loop times nothing but the probe, so a worker busy piping rows does not make the source look slow.
// A failed run (the source restarting, the session lost) is posted as an error; the session is opened
// again a second later. Each session runs the probe once untimed first.
// Every second it also reads, from pg_stat_statements when the source has it, how many statements
// the application ran and how long they took in all (every role's but the migration's own, in this
// database): a reading's window takes the difference across it (latency-probes.ts).
// Each run's time leaves out what this thread spent waiting for a CPU meanwhile (Linux's schedstat
// of the thread; elsewhere nothing is left out): on a worker whose cores are busy (piping rows, or
// sharing a machine with the Temporal server) the thread is often ready before it runs, and the
// source then looked slower than it was to anyone else. The server's own wait for a CPU stays in.
import { parentPort, workerData } from 'node:worker_threads';
import pg from 'pg';
import { cpuWaitNs, runTime } from './thread-cpu-wait';

export interface ProbeThreadData {
  session: pg.ClientConfig;
  probeQuery: string;
  /** The pause after each run, in ms. */
  everyMs: number;
  /** How often to read pg_stat_statements, in ms. */
  statementsEveryMs: number;
}

export type FromProbeThread =
  | { type: 'started'; at: number }
  /** `ms` leaves out `waitedMs`, the time this thread waited for a CPU during the run. */
  | { type: 'run'; at: number; ms: number; waitedMs: number }
  | { type: 'error'; at: number; message: string }
  /** The application's statements so far (pg_stat_statements' counters: they only grow, until a reset). */
  | { type: 'statements'; at: number; calls: number; totalMs: number }
  /** pg_stat_statements cannot be read here (not installed in this database, not loaded). */
  | { type: 'statements-unavailable'; at: number; message: string };

export type ToProbeThread = { type: 'stop' };

const RECONNECT_MS = 1000;
/** After pg_stat_statements could not be read, the next try is this much later, in ms. */
const STATEMENTS_RETRY_MS = 60_000;

/** Whether this session finds pg_stat_statements (its function, by the session's search_path). */
const FIND_STATEMENTS_SQL = `SELECT to_regprocedure('pg_stat_statements(boolean)') IS NOT NULL AS found`;

/**
 * The application's statements in this database so far: every role's but the session's own (the
 * migration's), top-level statements only (pg_stat_statements' default), without their texts.
 */
const APPLICATION_STATEMENTS_SQL = `SELECT coalesce(sum(calls), 0)::float8 AS calls,
         coalesce(sum(total_exec_time), 0)::float8 AS total_ms
    FROM pg_stat_statements(false)
   WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
     AND userid <> (SELECT oid FROM pg_roles WHERE rolname = session_user)`;

async function probeLoop(data: ProbeThreadData, port: NonNullable<typeof parentPort>): Promise<void> {
  let stopping = false;
  let session: pg.Client | undefined;
  let wake: (() => void) | undefined;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  port.on('message', (message: ToProbeThread) => {
    if (message.type !== 'stop') return;
    stopping = true;
    wake?.();
  });
  let statementsDueAt = 0;
  let statementsFound = false;
  /**
   * Reads pg_stat_statements when due; when it cannot (first looked for, so that a database without it
   * gets no error in its log), says why and tries again much later.
   */
  const readStatements = async (client: pg.Client) => {
    if (Date.now() < statementsDueAt) return;
    statementsDueAt = Date.now() + data.statementsEveryMs;
    try {
      if (!statementsFound) {
        const found = await client.query<{ found: boolean }>(FIND_STATEMENTS_SQL);
        if (found.rows[0]?.found !== true) {
          throw new Error(
            'pg_stat_statements is not installed in this database (CREATE EXTENSION pg_stat_statements, with the library in shared_preload_libraries)',
          );
        }
        statementsFound = true;
      }
      const { rows } = await client.query<{ calls: number; total_ms: number }>(APPLICATION_STATEMENTS_SQL);
      const at = Date.now();
      const { calls, total_ms: totalMs } = rows[0]!;
      port.postMessage({ type: 'statements', at, calls, totalMs } satisfies FromProbeThread);
    } catch (err) {
      statementsFound = false;
      statementsDueAt = Date.now() + STATEMENTS_RETRY_MS;
      port.postMessage({
        type: 'statements-unavailable',
        at: Date.now(),
        message: (err as Error).message,
      } satisfies FromProbeThread);
    }
  };
  while (!stopping) {
    try {
      if (session === undefined) {
        const opening = new pg.Client(data.session);
        // A session the server ends between two runs fails the next run; no uncaught 'error' here.
        opening.on('error', () => undefined);
        await opening.connect();
        session = opening;
        // A new session's first statement fills its server process's caches and warms this thread's
        // code: three to five times a later run, it was the slowest of a first reading's 40 runs,
        // so the baseline's p99. It runs once untimed.
        await session.query(data.probeQuery);
      }
      port.postMessage({ type: 'started', at: Date.now() } satisfies FromProbeThread);
      const waitedBefore = cpuWaitNs();
      const started = process.hrtime.bigint();
      await session.query(data.probeQuery);
      const elapsed = process.hrtime.bigint() - started;
      const run = runTime(elapsed, waitedBefore, cpuWaitNs());
      port.postMessage({ type: 'run', at: Date.now(), ...run } satisfies FromProbeThread);
      await readStatements(session);
      await pause(data.everyMs);
    } catch (err) {
      port.postMessage({
        type: 'error',
        at: Date.now(),
        message: (err as Error).message,
      } satisfies FromProbeThread);
      await session?.end().catch(() => undefined);
      session = undefined;
      await pause(RECONNECT_MS);
    }
  }
  await session?.end().catch(() => undefined);
  port.close();
}

if (parentPort !== null) void probeLoop(workerData as ProbeThreadData, parentPort);
