// One pg.Pool per named connection ("old", "new"), built from settings this worker resolved itself.
import pg from 'pg';
import type { ConnectionName, ResolvedConnection } from '../model/connections';

/**
 * Every session of the migration sees keys and values in one text form (UTC, ISO dates, exact
 * floats): keys travel between activities as text and must compare equal whichever session wrote them.
 * (Which sessions may write past the write guard is decided by their role, not by a setting: see
 * write-guard.ts.)
 */
export const SESSION_OPTIONS =
  '-c TimeZone=UTC -c DateStyle=ISO,YMD -c IntervalStyle=postgres -c extra_float_digits=3';

/**
 * A pg.Pool whose idle clients may lose their server (a restart, an administrator's termination,
 * the servers stopping at the end of a run) without crashing the process: pg emits such a loss as
 * an `error` event on the pool, which kills a process that does not listen for it. The pool drops
 * the lost client and the next query reconnects; a query under way, or one that got the lost client
 * before the server's notice arrived, still fails in its caller.
 */
export function toleratingPool(config: pg.PoolConfig): pg.Pool {
  const pool = new pg.Pool(config);
  pool.on('error', () => undefined);
  return pool;
}

/** Pools by connection name: what the syncer and the table shapes need, in a worker or a router. */
export interface NamedPools {
  get(name: ConnectionName): pg.Pool;
  /** The connection as shown in messages (host and database, never a password). */
  display(name: ConnectionName): string;
}

export class ConnectionPools implements NamedPools {
  private readonly pools = new Map<ConnectionName, pg.Pool>();

  constructor(
    private readonly connections: Record<ConnectionName, ResolvedConnection>,
    private readonly poolSize = 10,
  ) {}

  get(name: ConnectionName): pg.Pool {
    let pool = this.pools.get(name);
    if (pool === undefined) {
      pool = toleratingPool({ ...this.sessionConfig(name, name), max: this.poolSize });
      this.pools.set(name, pool);
    }
    return pool;
  }

  display(name: ConnectionName): string {
    return this.connections[name].display;
  }

  /** How a session of the migration to `name` is opened, named `pg-live-migrate <purpose>` on the server. */
  sessionConfig(name: ConnectionName, purpose: string): pg.ClientConfig {
    return {
      connectionString: this.connections[name].connectionString,
      application_name: `pg-live-migrate ${purpose}`,
      options: SESSION_OPTIONS,
    };
  }

  async end(): Promise<void> {
    await Promise.all([...this.pools.values()].map((pool) => pool.end()));
    this.pools.clear();
  }
}

/**
 * Runs `work` in one transaction on a session of `pool`: committed if it returns; if it throws, the
 * session is closed (withSession), which rolls the transaction back.
 */
export function withTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  return withSession(pool, async (client) => {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  });
}

/**
 * Runs `work` on one session of `pool`. A session whose work failed is closed instead of going back
 * to the pool, so a half-done COPY or an open transaction dies with it.
 */
export async function withSession<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  // A checked-out client has no 'error' listener of its pool's: a server ending the session between
  // two statements (a restart, new stopped while a mirror reads old) would be an uncaught exception.
  // The session's next statement fails with it instead.
  const ignore = () => undefined;
  client.on('error', ignore);
  try {
    const result = await work(client);
    client.removeListener('error', ignore);
    client.release();
    return result;
  } catch (err) {
    client.removeListener('error', ignore);
    client.release(err as Error);
    throw err;
  }
}
