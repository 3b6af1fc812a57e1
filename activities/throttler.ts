// Throttler: is the source hurting? Reads the signals an operator configured (a latency probe,
// active connections, replica lag) and answers with the first limit crossed, in words, so the
// backfill can wait and say why. And how is the application doing? Reads the latency the routers
// published for the application's statements with their last heartbeat, takes the p99 of the
// operator's probe query, which runs on the source in the background (latency-probes.ts), and counts
// the application's sessions that ran a statement on the source meanwhile (model/latency-throttle.ts
// decides what to do with it). The row rate and the operator's throttle are applied by the workflow
// itself; this activity only looks.
import { log } from '@temporalio/activity';
import type pg from 'pg';
import type { ConnectionName } from '../model/connections';
import type { ThrottleSettings } from '../model/throttle-settings';
import type { ConnectionPools } from '../db/pools';
import { liveRouters } from '../db/stage-store';
import {
  DEFAULT_LATENCY_TARGET,
  latencyQuantile,
  mergeLatencyCounts,
  runsQuantile,
  type LatencyReading,
} from '../model/latency-throttle';
import type { ServerBinding } from '../model/servers';
import { LATENCY_PROBES } from './latency-probes';

export interface ApplicationLatencyInput {
  migration: string;
  servers: ServerBinding;
  /** Where the probe query runs: the source of the copy. */
  source: ConnectionName;
  probeQuery: string;
  /** Router readings with fewer statements are left out (null). */
  minSamples: number;
  /** The seconds the reading covers, in ms (the brake's interval; absent from earlier runs: its default). */
  windowMs?: number;
}
import type { SourceLimit } from './metrics';

/** The limits the throttler checks (the row rate is the workflow's). */
export type SourceHealthLimits = Pick<
  ThrottleSettings,
  'maxProbeLatencyMs' | 'maxActiveConnections' | 'maxReplicaLagSeconds'
>;

export interface SourceHealth {
  /** Why the backfill should wait now, or null when the source is fine. */
  reason: string | null;
  /** Which limit that is (for metrics), or null. */
  limit?: SourceLimit | null;
  probeLatencyMs: number;
  activeConnections: number;
  replicaLagSeconds: number;
}

const PROBES = 3;

/** Runs `sql` `runs` times, one after the other; each run's time in ms, fastest first. */
async function timedRuns(pool: pg.Pool, sql: string, runs: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const started = process.hrtime.bigint();
    await pool.query(sql);
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  return times.sort((a, b) => a - b);
}

/** A session of pg_stat_activity that is the application's: a client, not one of the migration's. */
const APPLICATION_SESSION = `backend_type = 'client backend' AND coalesce(application_name, '') NOT LIKE 'pg-live-migrate%'`;

/**
 * Sessions on the source, other than the migration's own, that ran a statement in the last
 * `windowMs` or run one now (an idle session's state changed when its last statement ended). A
 * session whose state the migration's role may not see (another role's, without pg_read_all_stats)
 * counts as running one: the brake then never takes the application for idle.
 */
const APPLICATION_SESSIONS_SQL = `
  SELECT count(*)::int AS sessions FROM pg_stat_activity
   WHERE ${APPLICATION_SESSION} AND pid <> pg_backend_pid()
     AND (state IS DISTINCT FROM 'idle' OR state_change > now() - make_interval(secs => $1::float8 / 1000))`;

/** Looks at the source's health: its probe latency, active application sessions and replica lag. */
async function lookAtSource(pool: pg.Pool, limits: SourceHealthLimits): Promise<SourceHealth> {
  const latencies = await timedRuns(pool, 'SELECT 1', PROBES);
  const probeLatencyMs = Math.round((latencies[Math.floor(PROBES / 2)] ?? 0) * 10) / 10;
  const status = await pool.query<{ active: number; lag: number }>(
    `SELECT (SELECT count(*)::int FROM pg_stat_activity
              WHERE state = 'active' AND ${APPLICATION_SESSION}) AS active,
            (SELECT coalesce(max(extract(epoch FROM replay_lag)), 0)::float8 FROM pg_stat_replication) AS lag`,
  );
  const activeConnections = status.rows[0]?.active ?? 0;
  const replicaLagSeconds = status.rows[0]?.lag ?? 0;
  const { maxProbeLatencyMs, maxActiveConnections, maxReplicaLagSeconds } = limits;
  let reason: string | null = null;
  let limit: SourceLimit | null = null;
  if (maxProbeLatencyMs != null && probeLatencyMs > maxProbeLatencyMs) {
    reason = `source latency probe ${probeLatencyMs} ms > ${maxProbeLatencyMs} ms`;
    limit = 'probe_latency';
  } else if (maxActiveConnections != null && activeConnections > maxActiveConnections) {
    reason = `source has ${activeConnections} active connections > ${maxActiveConnections}`;
    limit = 'active_connections';
  } else if (maxReplicaLagSeconds != null && replicaLagSeconds > maxReplicaLagSeconds) {
    reason = `replica lag ${replicaLagSeconds.toFixed(1)} s > ${maxReplicaLagSeconds} s`;
    limit = 'replica_lag';
  }
  return { reason, limit, probeLatencyMs, activeConnections, replicaLagSeconds };
}

/** What a batch looks at the source with: the limits, and how old a look may be to serve it. */
export interface SourceLook extends SourceHealthLimits {
  /** A look of the same limits that started less than this many ms ago serves (checkIntervalMs). */
  maxAgeMs: number;
}

/**
 * Looks at a source's health for the copy's batches (copier.ts): a look with the same limits that
 * started less than `maxAgeMs` ago serves every batch that asks (one that found the source hurting,
 * only while it runs), so the partitions copying side by side look at the application's database
 * once per interval between them, as each one did before.
 */
export function createSourceLooks(pools: ConnectionPools) {
  const recent = new Map<string, { at: number; look: Promise<SourceHealth> }>();
  return (connection: ConnectionName, { maxAgeMs, ...limits }: SourceLook): Promise<SourceHealth> => {
    const key = JSON.stringify([
      connection,
      limits.maxProbeLatencyMs,
      limits.maxActiveConnections,
      limits.maxReplicaLagSeconds,
    ]);
    const shared = recent.get(key);
    if (shared !== undefined && Date.now() - shared.at < maxAgeMs) return shared.look;
    const look = lookAtSource(pools.get(connection), limits);
    recent.set(key, { at: Date.now(), look });
    // A failed look, and one that found the source hurting, serve only the batches that asked while
    // it ran: a batch that waited out its backoff looks again.
    const forget = () => {
      if (recent.get(key)?.look === look) recent.delete(key);
    };
    look.then((health) => health.reason !== null && forget(), forget);
    return look;
  };
}

export type SourceLooks = ReturnType<typeof createSourceLooks>;

/** Why pg_stat_statements could not be read, as already logged by this worker (once each). */
const toldUnavailable = new Set<string>();

export function createThrottler(pools: ConnectionPools) {
  return {
    /** The source's health, looked at now (the verification's gate, and backfills started before copyChunks looked itself). */
    checkSourceHealth: (input: {
      connection: ConnectionName;
      limits: SourceHealthLimits;
    }): Promise<SourceHealth> => lookAtSource(pools.get(input.connection), input.limits),

    /** The application's latency now: the routers' last heartbeat windows, and the probe query's. */
    measureApplicationLatency: async (input: ApplicationLatencyInput): Promise<LatencyReading> => {
      // Routers register in old's stage store, whichever side the copy reads.
      const routers = (await liveRouters(pools.get('old'), input.migration)).filter(
        (router) => router.stats?.latency !== undefined,
      );
      const counts = mergeLatencyCounts(routers.map((router) => router.stats!.latency!));
      const samples = counts.reduce((sum, n) => sum + n, 0);
      const p99Ms = latencyQuantile(counts, 0.99);
      const windowMs = input.windowMs ?? DEFAULT_LATENCY_TARGET.intervalMs;
      const { runs, statements, statementsUnavailable } = await LATENCY_PROBES.window(
        pools.sessionConfig(input.source, 'latency probe'),
        input.probeQuery,
        windowMs,
      );
      if (statementsUnavailable !== undefined && !toldUnavailable.has(statementsUnavailable)) {
        toldUnavailable.add(statementsUnavailable);
        log.info(
          'the latency brake cannot count the application statements on the source (pg_stat_statements)',
          {
            source: input.source,
            reason: statementsUnavailable,
          },
        );
      }
      const sessions = await pools
        .get(input.source)
        .query<{ sessions: number }>(APPLICATION_SESSIONS_SQL, [windowMs]);
      return {
        routers:
          p99Ms !== null && samples >= input.minSamples ? { p99Ms, samples, routers: routers.length } : null,
        probe: {
          p99Ms: Math.round(runsQuantile(runs, 0.99) * 100) / 100,
          runs: runs.length,
          applicationSessions: sessions.rows[0]?.sessions ?? 0,
        },
        statements,
      };
    },
  };
}
