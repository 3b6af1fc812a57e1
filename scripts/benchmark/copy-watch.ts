// What the copy and the two servers were doing each second of a backfill under load, so that the
// load's tail in a few seconds of the copy can be laid beside its likely causes: the latency brake's
// limit and last reading (the backfill workflow's progress query), and on each server the
// autovacuum workers at work, whether the checkpointer is writing a checkpoint, how many sessions
// were opened (a new session forks a backend on the application's server), and the CPU each process
// used (old's and new's PostgreSQL, this process with the worker and the load's thread, the Temporal
// server): on a machine they share, what the application waits for.
import pg from 'pg';
import type { LatencyThrottleState } from '../../model/latency-throttle';
import { coresBusy, describeCores, type CpuSeconds } from './cpu';
import { TIMELINE_SECONDS } from './write-load';

const WATCH_EVERY_MS = 1000;

/** One server at one moment: the autovacuum workers' targets, and whether a checkpoint is written. */
interface ServerMoment {
  autovacuum: string[];
  checkpointing: boolean;
  /** Sessions opened on the server since it started (pg_stat_database, PostgreSQL 14 and later). */
  sessions: number | null;
}

interface Moment {
  atMs: number;
  limit: number | null | undefined;
  probeMs: number | undefined;
  old: ServerMoment | undefined;
  new: ServerMoment | undefined;
  cpu: CpuSeconds | undefined;
}

/** What was going on in one TIMELINE_SECONDS window of the copy. */
export interface WatchWindow {
  fromSeconds: number;
  /** The brake's limit over the window, rows/s (null: no limit; undefined: no brake yet). */
  limits: Array<number | null>;
  /** The brake's last reading over the window (ms; the probe's or the routers' p99). */
  readingsMs: number[];
  /** Tables autovacuum worked on in the window, by server. */
  autovacuum: { old: string[]; new: string[] };
  /** Whether a checkpoint was being written at some moment of the window, by server. */
  checkpoint: { old: boolean; new: boolean };
  /** Sessions opened on each server since the moment before the window's first (null: not known). */
  sessionsOpened: { old: number | null; new: number | null };
  /** Cores each process kept busy over the window, on average (null: /proc cannot tell). */
  cpuCores: CpuSeconds | null;
}

async function serverMoment(pool: pg.Pool): Promise<ServerMoment | undefined> {
  try {
    const { rows } = await pool.query<{ backend_type: string; wait_event: string | null; query: string }>(
      `SELECT backend_type, wait_event, query FROM pg_stat_activity
        WHERE backend_type IN ('autovacuum worker', 'checkpointer')`,
    );
    const sessions = await pool
      .query<{ sessions: string }>('SELECT sum(sessions) AS sessions FROM pg_stat_database')
      .then((result) => Number(result.rows[0]?.sessions ?? Number.NaN))
      .catch(() => Number.NaN);
    return {
      sessions: Number.isFinite(sessions) ? sessions : null,
      autovacuum: rows
        .filter((row) => row.backend_type === 'autovacuum worker' && row.query !== '')
        .map((row) => row.query.replace(/^autovacuum:\s*/, '')),
      // An idle checkpointer waits in its main loop; writing a checkpoint it waits on its writes.
      checkpointing: rows.some(
        (row) => row.backend_type === 'checkpointer' && row.wait_event !== 'CheckpointerMain',
      ),
    };
  } catch {
    return undefined;
  }
}

/** Samples the brake and both servers every second until stopped. */
export class CopyWatch {
  private readonly moments: Moment[] = [];
  private readonly pools: { old: pg.Pool; new: pg.Pool };
  private timer: NodeJS.Timeout | undefined;
  private sampling: Promise<void> = Promise.resolve();

  constructor(
    urls: { old: string; new: string },
    private readonly brake: () => Promise<LatencyThrottleState | undefined>,
    private readonly cpu: () => CpuSeconds | undefined,
  ) {
    // Named as the migration's own sessions are: the brake must not count the watch as the
    // application (it lifts its limit when no other session ran a statement).
    this.pools = {
      old: new pg.Pool({
        connectionString: urls.old,
        max: 1,
        application_name: 'pg-live-migrate bench copy watch',
      }),
      new: new pg.Pool({
        connectionString: urls.new,
        max: 1,
        application_name: 'pg-live-migrate bench copy watch',
      }),
    };
    for (const pool of Object.values(this.pools)) pool.on('error', () => undefined);
  }

  start(): void {
    const tick = () => {
      this.sampling = this.sample().finally(() => {
        if (this.timer !== undefined) this.timer = setTimeout(tick, WATCH_EVERY_MS);
      });
    };
    this.timer = setTimeout(tick, 0);
  }

  private async sample(): Promise<void> {
    const [brake, old, target] = await Promise.all([
      this.brake().catch(() => undefined),
      serverMoment(this.pools.old),
      serverMoment(this.pools.new),
    ]);
    this.moments.push({
      atMs: performance.now(),
      limit: brake === undefined ? undefined : brake.limit,
      probeMs: brake?.last?.ms,
      old,
      new: target,
      cpu: this.cpu(),
    });
  }

  /** Stops sampling and closes its connections. */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    await this.sampling;
    await Promise.all(Object.values(this.pools).map((pool) => pool.end().catch(() => undefined)));
  }

  /** The moments from `startedAt` to `endedAt` (performance.now() ms), by TIMELINE_SECONDS window. */
  windows(startedAt: number, endedAt: number): WatchWindow[] {
    const empty = (index: number): WatchWindow => ({
      fromSeconds: index * TIMELINE_SECONDS,
      limits: [],
      readingsMs: [],
      autovacuum: { old: [], new: [] },
      checkpoint: { old: false, new: false },
      sessionsOpened: { old: null, new: null },
      cpuCores: null,
    });
    const windows: WatchWindow[] = [];
    // Each window's counters (CPU, sessions) change from the last moment before it to its last moment.
    const spans: Array<{ from: Moment; to: Moment }> = [];
    let before: Moment | undefined;
    for (const moment of this.moments) {
      const previous = before;
      before = moment;
      if (moment.atMs < startedAt || moment.atMs > endedAt) continue;
      const index = Math.floor((moment.atMs - startedAt) / (TIMELINE_SECONDS * 1000));
      const window = (windows[index] ??= empty(index));
      if (previous !== undefined) (spans[index] ??= { from: previous, to: moment }).to = moment;
      if (moment.limit !== undefined && window.limits.at(-1) !== moment.limit)
        window.limits.push(moment.limit);
      if (moment.probeMs !== undefined && window.readingsMs.at(-1) !== moment.probeMs) {
        window.readingsMs.push(moment.probeMs);
      }
      for (const side of ['old', 'new'] as const) {
        const seen = moment[side];
        if (seen === undefined) continue;
        for (const target of seen.autovacuum) {
          if (!window.autovacuum[side].includes(target)) window.autovacuum[side].push(target);
        }
        window.checkpoint[side] ||= seen.checkpointing;
      }
    }
    spans.forEach(({ from, to }, index) => {
      const window = windows[index]!;
      window.cpuCores = coresBusy(from.cpu, to.cpu, (to.atMs - from.atMs) / 1000) ?? null;
      for (const side of ['old', 'new'] as const) {
        const [earlier, later] = [from[side]?.sessions, to[side]?.sessions];
        if (earlier != null && later != null) window.sessionsOpened[side] = later - earlier;
      }
    });
    return Array.from(windows, (window, index) => window ?? empty(index));
  }
}

/** One line per window: the load's p99 beside the brake's limit and what the servers were doing. */
export function describeWindows(
  p99s: ReadonlyArray<{ fromSeconds: number; p99Ms: number }>,
  watched: WatchWindow[],
): string[] {
  return p99s.map((window, i) => {
    const seen = watched[i];
    const limits =
      seen === undefined || seen.limits.length === 0
        ? '-'
        : seen.limits.map((limit) => (limit === null ? 'none' : String(Math.round(limit)))).join('→');
    const servers =
      seen === undefined
        ? []
        : (['old', 'new'] as const).flatMap((side) => [
            ...(seen.checkpoint[side] ? [`${side}: checkpoint`] : []),
            ...seen.autovacuum[side].map((target) => `${side}: autovacuum ${target}`),
            // The watch's own sessions are open for the whole copy: any counted here are others'.
            ...(seen.sessionsOpened[side] ? [`${side}: ${seen.sessionsOpened[side]} sessions opened`] : []),
          ]);
    const cpu = seen?.cpuCores == null ? '' : `  cores: ${describeCores(seen.cpuCores)}`;
    return `  ${String(window.fromSeconds).padStart(4)} s  p99 ${window.p99Ms.toFixed(1).padStart(6)} ms${cpu}  limit ${limits}${
      seen !== undefined && seen.readingsMs.length > 0
        ? `  readings ${seen.readingsMs.map((ms) => ms.toFixed(1)).join(', ')} ms`
        : ''
    }${servers.length > 0 ? `  ${servers.join('; ')}` : ''}`;
  });
}
