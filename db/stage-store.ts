// The stage store: the migration's stage and read percentage in a small table, changed by the
// migration (through an activity) and followed by every router. A change is announced with NOTIFY in
// the same transaction, so a listening router sees it at once; each router also polls, in case a
// notification is lost (a dropped connection, a pooler that does not pass LISTEN). Routers register
// with a heartbeat and the version they have seen, so a cutover can tell which routers are alive and
// what each one follows.
import { hostname } from 'node:os';
import { EventEmitter } from 'node:events';
import type pg from 'pg';
import { HELPER_SCHEMA } from './helper-schema';
import { withTransaction } from './pools';
import type { RouterStats } from '../model/gate-stats';
import { STAGES, type Stage, type StageState } from '../model/stages';

export const STAGE_CHANNEL = 'live_migrate_stage';
const INITIAL: StageState = { stage: 'off', readPercent: 0, version: 0, fenced: false };

export async function readStage(pool: pg.Pool | pg.ClientBase, migration: string): Promise<StageState> {
  const { rows } = await pool.query<{ stage: Stage; read_percent: number; version: string; fenced: boolean }>(
    `SELECT stage, read_percent, version, fenced FROM ${HELPER_SCHEMA}.stages WHERE migration = $1`,
    [migration],
  );
  const row = rows[0];
  return row === undefined
    ? INITIAL
    : { stage: row.stage, readPercent: row.read_percent, version: Number(row.version), fenced: row.fenced };
}

/**
 * Sets the stage and announces it; returns the new state. Refuses an unknown stage or percentage.
 * `fenced` raises the write fence (see StageState); any change without it lifts the fence.
 */
export async function setStage(
  pool: pg.Pool,
  migration: string,
  change: { stage: Stage; readPercent?: number; fenced?: boolean },
): Promise<StageState> {
  if (!STAGES.includes(change.stage)) {
    throw new Error(`unknown stage ${String(change.stage)}; stages are ${STAGES.join(', ')}`);
  }
  const readPercent =
    change.readPercent ?? (change.stage === 'switched' || change.stage === 'complete' ? 100 : 0);
  if (!Number.isInteger(readPercent) || readPercent < 0 || readPercent > 100) {
    throw new Error(`readPercent is ${readPercent}; it must be a whole number from 0 to 100`);
  }
  return withTransaction(pool, async (client) => {
    const fenced = change.fenced ?? false;
    const { rows } = await client.query<{ version: string }>(
      `INSERT INTO ${HELPER_SCHEMA}.stages (migration, stage, read_percent, version, fenced) VALUES ($1, $2, $3, 1, $4)
       ON CONFLICT (migration) DO UPDATE
         SET stage = EXCLUDED.stage, read_percent = EXCLUDED.read_percent, fenced = EXCLUDED.fenced,
             version = stages.version + 1, changed_at = now()
       RETURNING version`,
      [migration, change.stage, readPercent, fenced],
    );
    await client.query('SELECT pg_notify($1, $2)', [STAGE_CHANNEL, migration]);
    return { stage: change.stage, readPercent, version: Number(rows[0]?.version ?? 0), fenced };
  });
}

export interface RegisteredRouter {
  routerId: string;
  stage: Stage | null;
  version: number | null;
  host: string | null;
  pid: number | null;
  /** Seconds since its last heartbeat. */
  silentSeconds: number;
  /**
   * Its session on old (the one it listens on) has ended without the router saying goodbye: its
   * process has most likely died. False while unknown (a router polling only, or one from before
   * the helper schema recorded its session).
   */
  sessionGone: boolean;
  /** The fenced stage version this router acknowledged (no write of its own in flight), or null. */
  fenceAcknowledged: number | null;
  /** Its counters for the gates as of its last heartbeat, or null. */
  stats: RouterStats | null;
}

/** A router not heard from for longer than this (three default heartbeats) counts as gone. */
export const SILENT_AFTER_SECONDS = 15;

/**
 * The routers heard from within `silentAfterSeconds` whose session on old has not ended: those a
 * gate or a fence must count. A router whose process died has no write in flight to wait for (and
 * should one of its sessions still be open, the switch's guard waits for it and refuses any later).
 */
export async function liveRouters(
  pool: pg.Pool,
  migration: string,
  silentAfterSeconds = SILENT_AFTER_SECONDS,
): Promise<RegisteredRouter[]> {
  return (await listRouters(pool, migration)).filter(
    (router) => !router.sessionGone && router.silentSeconds <= silentAfterSeconds,
  );
}

export async function listRouters(pool: pg.Pool, migration: string): Promise<RegisteredRouter[]> {
  const { rows } = await pool.query<{
    router_id: string;
    stage: Stage | null;
    version: string | null;
    host: string | null;
    pid: number | null;
    silent: number;
    fence_acknowledged: string | null;
    stats: RouterStats | null;
    session_gone: boolean;
  }>(
    // Every role sees every backend's pid in pg_stat_activity, so the check needs no privilege.
    `SELECT router_id, stage, version, host, pid, extract(epoch FROM now() - heartbeat_at)::float8 AS silent,
            fence_acknowledged, stats,
            listener_pid IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM pg_stat_activity AS a WHERE a.pid = r.listener_pid) AS session_gone
       FROM ${HELPER_SCHEMA}.routers AS r WHERE migration = $1 ORDER BY router_id`,
    [migration],
  );
  return rows.map((row) => ({
    routerId: row.router_id,
    stage: row.stage,
    version: row.version === null ? null : Number(row.version),
    host: row.host,
    pid: row.pid,
    silentSeconds: row.silent,
    sessionGone: row.session_gone,
    fenceAcknowledged: row.fence_acknowledged === null ? null : Number(row.fence_acknowledged),
    stats: row.stats,
  }));
}

export interface StageWatcherOptions {
  routerId: string;
  /** How often to read the store even without a notification, in ms (default 1000). */
  pollMs?: number;
  /** How often to tell the store this router is alive, in ms (default 5000). */
  heartbeatMs?: number;
  /** Listen for notifications (default true); polling alone still sees every change. */
  listen?: boolean;
  /** What the router publishes with each heartbeat for the migration's gates. */
  stats?: () => RouterStats;
}

const UNDEFINED_COLUMN = '42703';

/** A router's registration and heartbeat; `withListener` also records its listening session ($9). */
function heartbeatSql(withListener: boolean): string {
  const listener = withListener ? ', listener_pid' : '';
  return `INSERT INTO ${HELPER_SCHEMA}.routers (router_id, migration, stage, version, host, pid, fence_acknowledged, stats${listener})
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8${withListener ? ', $9' : ''})
          ON CONFLICT (router_id) DO UPDATE
            SET stage = EXCLUDED.stage, version = EXCLUDED.version,
                fence_acknowledged = EXCLUDED.fence_acknowledged, stats = EXCLUDED.stats${withListener ? ', listener_pid = EXCLUDED.listener_pid' : ''},
                heartbeat_at = now()`;
}

/**
 * Follows one migration's stage: emits 'change' with the new StageState whenever the version grows,
 * and keeps this router's registration fresh. `start()` reads the current stage before returning.
 */
export class StageWatcher extends EventEmitter {
  private state: StageState = INITIAL;
  private listener: pg.PoolClient | undefined;
  private timers: NodeJS.Timeout[] = [];
  private refreshing: Promise<void> | undefined;
  private stopped = false;
  private fenceAcknowledged: number | null = null;
  /** The backend pid of the listening session, published so a dead router shows as gone at once. */
  private listenerPid: number | null = null;
  /** False once the store turned out to predate routers.listener_pid (helper schema not yet upgraded). */
  private storeHasListenerPid = true;

  constructor(
    private readonly pool: pg.Pool,
    private readonly migration: string,
    private readonly options: StageWatcherOptions,
  ) {
    super();
  }

  get current(): StageState {
    return this.state;
  }

  async start(): Promise<StageState> {
    await this.refresh();
    await this.heartbeat();
    if (this.options.listen ?? true) {
      this.listener = await this.pool.connect();
      this.listener.on('notification', (message) => {
        if (message.channel === STAGE_CHANNEL && message.payload === this.migration) void this.refresh();
      });
      // A listener that loses its connection falls back to polling until the router restarts it; its
      // session is no longer this router's, so it is no longer published as such.
      this.listener.on('error', () => {
        this.listenerPid = null;
        void this.heartbeat();
      });
      await this.listener.query(`LISTEN ${STAGE_CHANNEL}`);
      const backend = await this.listener.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
      this.listenerPid = backend.rows[0]?.pid ?? null;
      await this.heartbeat();
    }
    this.timers.push(setInterval(() => void this.refresh(), this.options.pollMs ?? 1000));
    this.timers.push(setInterval(() => void this.heartbeat(), this.options.heartbeatMs ?? 5000));
    for (const timer of this.timers) timer.unref();
    return this.state;
  }

  /** Reads the store; one read at a time, errors are emitted, never thrown at the application. */
  refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        const next = await readStage(this.pool, this.migration);
        // Not only "greater": a migration aborted and started again under its name counts from 1 anew.
        if (next.version !== this.state.version) {
          this.state = next;
          this.emit('change', next);
          await this.heartbeat();
        }
      } catch (err) {
        this.emit('error-seen', err);
      } finally {
        this.refreshing = undefined;
      }
    })();
    return this.refreshing;
  }

  /** Tells the store this router holds the fence of `version`: none of its writes is in flight. */
  async acknowledgeFence(version: number): Promise<void> {
    if (this.fenceAcknowledged === version) return;
    this.fenceAcknowledged = version;
    await this.heartbeat();
  }

  private async heartbeat(): Promise<void> {
    if (this.stopped) return;
    const values = [
      this.options.routerId,
      this.migration,
      this.state.stage,
      this.state.version,
      hostname(),
      process.pid,
      this.fenceAcknowledged,
      this.options.stats === undefined ? null : JSON.stringify(this.options.stats()),
    ];
    try {
      if (this.storeHasListenerPid) {
        try {
          await this.pool.query(heartbeatSql(true), [...values, this.listenerPid]);
          return;
        } catch (err) {
          // A helper schema installed by an earlier version: register without the session.
          if ((err as { code?: string }).code !== UNDEFINED_COLUMN) throw err;
          this.storeHasListenerPid = false;
        }
      }
      await this.pool.query(heartbeatSql(false), values);
    } catch (err) {
      this.emit('error-seen', err);
    }
  }

  /** Stops following and removes this router's registration. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) clearInterval(timer);
    this.timers = [];
    if (this.listener !== undefined) {
      await this.listener.query(`UNLISTEN ${STAGE_CHANNEL}`).catch(() => undefined);
      this.listener.release();
      this.listener = undefined;
    }
    await this.refreshing;
    await this.pool
      .query(`DELETE FROM ${HELPER_SCHEMA}.routers WHERE router_id = $1`, [this.options.routerId])
      .catch(() => undefined);
  }
}
