// Server identity: which databases a migration is bound to. When a migration prepares, it records
// each side's identity (a random id kept in the helper schema, the system identifier when the role
// may read it, the database's name and oid, the role the migration connects as, and a label); the
// workflows carry that binding to every activity, and every activity compares it with the servers
// its worker is connected to before it touches data. A worker started with another stack's URLs, or
// a typo that points at the wrong database, fails at once and without retry, naming both identities,
// instead of running one migration across two pairs of databases.
import type pg from 'pg';
import { CONNECTION_NAMES, type ConnectionName } from '../model/connections';
import { MigrationFault, WRONG_SERVERS } from '../model/errors';
import {
  describeIdentity,
  identityDifferences,
  type ServerBinding,
  type ServerIdentity,
} from '../model/servers';
import { ensureHelperSchema, HELPER_SCHEMA } from '../db/helper-schema';
import type { NamedPools } from '../db/pools';

/** A database error the role may meet reading the system identifier: then it is left out. */
const NOT_ALLOWED = new Set(['42501', '42883']);

/** Reads a database's identity; writes nothing (a database no migration has met has no id). */
async function readIdentity(pool: pg.Pool, label: string): Promise<ServerIdentity> {
  const { rows } = await pool.query<{ known: boolean; database: string; oid: number; role: string }>(
    `SELECT to_regclass('${HELPER_SCHEMA}.server_identity') IS NOT NULL AS known, current_database() AS database,
            (SELECT oid::int FROM pg_database WHERE datname = current_database()) AS oid, session_user AS role`,
  );
  const row = rows[0]!;
  const id = row.known
    ? ((await pool.query<{ id: string }>(`SELECT id::text AS id FROM ${HELPER_SCHEMA}.server_identity`))
        .rows[0]?.id ?? null)
    : null;
  let systemIdentifier: string | null = null;
  try {
    const system = await pool.query<{ id: string }>(
      `SELECT system_identifier::text AS id FROM pg_control_system()`,
    );
    systemIdentifier = system.rows[0]?.id ?? null;
  } catch (err) {
    if (!NOT_ALLOWED.has((err as { code?: string }).code ?? '')) throw err;
  }
  return { id, systemIdentifier, database: row.database, databaseOid: row.oid, role: row.role, label };
}

/**
 * This worker's view of its servers' identities, read once per connection and read again whenever
 * the pool drops a connection (a server that restarted, or another one now on the same port).
 */
export class ServerIdentities {
  private readonly seen = new Map<ConnectionName, Promise<ServerIdentity>>();
  private readonly watched = new WeakSet<pg.Pool>();

  constructor(private readonly pools: NamedPools) {}

  current(name: ConnectionName): Promise<ServerIdentity> {
    let identity = this.seen.get(name);
    if (identity === undefined) {
      const pool = this.pools.get(name);
      if (!this.watched.has(pool)) {
        this.watched.add(pool);
        const forget = () => this.seen.delete(name);
        pool.on('remove', forget);
        pool.on('error', forget);
      }
      identity = readIdentity(pool, this.pools.display(name));
      identity.catch(() => this.seen.delete(name));
      this.seen.set(name, identity);
    }
    return identity;
  }

  /** Both sides' identities now, for a migration to record; refuses old and new being one database. */
  async bind(): Promise<ServerBinding> {
    // A database a migration meets for the first time gets its id here.
    for (const name of CONNECTION_NAMES) {
      await ensureHelperSchema(this.pools.get(name));
      this.seen.delete(name);
    }
    const [oldSide, newSide] = await Promise.all([this.current('old'), this.current('new')]);
    if (oldSide.id === newSide.id) {
      throw new MigrationFault(
        WRONG_SERVERS,
        `old and new are the same database: ${describeIdentity(oldSide)}; point NEW_DATABASE_URL (or the config's new connection) at the database you migrate to`,
      );
    }
    return { old: oldSide, new: newSide };
  }

  /** Refuses, without retry, when this worker is not connected to the servers the migration recorded. */
  async verify(binding: ServerBinding): Promise<void> {
    for (const name of CONNECTION_NAMES) {
      const seen = await this.current(name);
      const differences = identityDifferences(binding[name], seen);
      if (differences.length > 0) {
        throw new MigrationFault(
          WRONG_SERVERS,
          `this worker's ${name} database is not the one the migration was prepared on: it is ${differences.join(' and ')}. Recorded: ${describeIdentity(binding[name])}; this worker: ${describeIdentity(seen)}. Point the worker's ${name} connection at the recorded database (every worker of the task queue must use the same servers), then resume the migration`,
        );
      }
    }
  }
}
