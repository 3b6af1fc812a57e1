// One pg.Pool per named connection ("old", "new"), built from settings this worker resolved itself.
import pg from 'pg';
import type { ConnectionName, ResolvedConnection } from '../config/connections';

export class ConnectionPools {
  private readonly pools = new Map<ConnectionName, pg.Pool>();

  constructor(
    private readonly connections: Record<ConnectionName, ResolvedConnection>,
    private readonly poolSize = 10,
  ) {}

  get(name: ConnectionName): pg.Pool {
    let pool = this.pools.get(name);
    if (pool === undefined) {
      pool = new pg.Pool({
        connectionString: this.connections[name].connectionString,
        max: this.poolSize,
        application_name: `pg-live-migrate ${name}`,
      });
      // An idle client that loses its server must not crash the worker; the next query reconnects.
      pool.on('error', () => undefined);
      this.pools.set(name, pool);
    }
    return pool;
  }

  display(name: ConnectionName): string {
    return this.connections[name].display;
  }

  async end(): Promise<void> {
    await Promise.all([...this.pools.values()].map((pool) => pool.end()));
    this.pools.clear();
  }
}
