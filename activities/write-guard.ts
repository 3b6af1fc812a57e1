// The guards: what stops a write the migration would not see. Two kinds, both named for the
// migration (so another migration's abort or retire never removes them) and both covering the
// table and every partition, present and attached later:
// - the TRUNCATE guard, on both sides from prepare until the migration ends: TRUNCATE fires no row
//   trigger, so capture could not carry it and the other side would keep the rows. A statement
//   trigger on the table and on each partition (TRUNCATE of a partition fires only its own).
// - the write guard, on the side that gave up authority (old after the switch; the giving side
//   while a switch drains): a BEFORE row trigger on the table, which PostgreSQL clones to every
//   partition, present and future, that refuses INSERT, UPDATE and DELETE from every session but the
//   migration's own role. The exception rests on session_user, which a session cannot change without
//   being a superuser, not on a setting anyone can SET. The refusal uses SQLSTATE 25006
//   (read-only transaction), the error an application sees on a read-only replica.
// Partitions attached mid-migration are covered by coverPartitions, which reconciliation runs: it
// adds the TRUNCATE guard to them and, on the side being captured, logs the keys of the rows they
// brought (ATTACH fires no trigger), so those rows reach the other side too. A partition detached
// from a migrated table takes its rows out of the table without any trigger firing: that stops the
// migration with the reason. Installed and removed idempotently.
import type pg from 'pg';
import type { ConnectionName } from '../model/connections';
import { ensureHelperSchema, HELPER_SCHEMA, migrationObjectName } from '../db/helper-schema';
import type { TableRef } from '../model/tables';
import { withTransaction, type NamedPools } from '../db/pools';
import type { ServerBinding } from '../model/servers';
import { quoteIdent, quoteList, quoteLiteral, quoteTable } from '../db/sql';
import { PARTITIONS_SQL, type CheckedTable, type RegistryRow, type TableRegistry } from './table-registry';
import { SCHEMA_CHANGED } from '../model/errors';
import { MigrationFault } from '../model/errors';

const LOCK_TIMEOUT = '5s';

export interface GuardInput {
  migration: string;
  servers: ServerBinding;
  connection: ConnectionName;
  tables: TableRef[];
}

export function truncateGuardName(migration: string): string {
  return migrationObjectName('lm_truncate', migration);
}

export function writeGuardName(migration: string): string {
  return migrationObjectName('lm_guard', migration);
}

/** Every partition of a table at every level, schema-qualified and quoted (empty for a plain table). */
async function partitionsOf(client: pg.Pool | pg.ClientBase, table: TableRef): Promise<string[]> {
  const rel = `to_regclass(${quoteLiteral(quoteTable(table))})`;
  const { rows } = await client.query<{ partitions: string[] }>(
    `SELECT ${PARTITIONS_SQL(rel)} AS partitions`,
  );
  return rows[0]?.partitions ?? [];
}

function createTruncateGuardSql(migration: string, relation: string): string {
  const name = quoteIdent(truncateGuardName(migration));
  return `DROP TRIGGER IF EXISTS ${name} ON ${relation};
          CREATE TRIGGER ${name} BEFORE TRUNCATE ON ${relation}
            FOR EACH STATEMENT EXECUTE FUNCTION ${HELPER_SCHEMA}.refuse_truncate(${quoteLiteral(migration)})`;
}

export function createGuards(pools: NamedPools, registry: TableRegistry) {
  const lockedTransaction = <T>(connection: ConnectionName, work: (client: pg.PoolClient) => Promise<T>) =>
    withTransaction(pools.get(connection), async (client) => {
      await client.query(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
      return work(client);
    });

  /**
   * Looks at the partitions of the migration's tables on one side: adds the TRUNCATE guard to any
   * partition attached since the last look and, when `adoptRows` (the side capture is on), logs the
   * keys of its rows for reconciliation; refuses (non-retryable, SchemaChanged) when a partition was
   * detached. Returns the partitions it adopted.
   */
  async function coverPartitions(input: {
    migration: string;
    connection: ConnectionName;
    adoptRows: boolean;
    /** A look taken already (TableRegistry.check); taken here when absent. */
    looked?: CheckedTable[];
  }): Promise<string[]> {
    const adopted: string[] = [];
    const looked = input.looked ?? (await registry.check(input.connection, input.migration));
    for (const row of looked.filter((entry) => entry.present)) {
      const now = row.partitionsNow;
      const added = now.filter((partition) => !row.partitions.includes(partition));
      const gone = row.partitions.filter((partition) => !now.includes(partition));
      if (gone.length > 0) {
        throw new MigrationFault(
          SCHEMA_CHANGED,
          `partition ${gone.join(', ')} of ${quoteTable(row.table)} was detached (or dropped) on the ${input.connection} database since migration ${input.migration} last looked: its rows left the table there without any trigger firing, so the other database still has them. Detach or drop it on the other database as well (or attach it back), then resume the migration`,
          { table: `${row.table.schema}.${row.table.table}`, side: input.connection },
        );
      }
      if (added.length === 0) continue;
      await lockedTransaction(input.connection, async (client) => {
        for (const partition of added) await client.query(createTruncateGuardSql(input.migration, partition));
        if (input.adoptRows) await logRowsOf(client, input.migration, row, added);
        await registry.setPartitions(client, input.migration, row.table, now);
      });
      adopted.push(...added);
    }
    return adopted;
  }

  /** Logs the key of every row of newly attached partitions, under the table's name, for reconciliation. */
  async function logRowsOf(client: pg.ClientBase, migration: string, row: RegistryRow, partitions: string[]) {
    const key = `jsonb_build_array(${quoteList(row.shape.primaryKey)})`;
    for (const partition of partitions) {
      await client.query(
        `INSERT INTO ${HELPER_SCHEMA}.change_log (migration, table_schema, table_name, key)
         SELECT $1, $2, $3, ${key} FROM ${partition}`,
        [migration, row.table.schema, row.table.table],
      );
    }
  }

  return {
    coverPartitions,

    /** Refuses TRUNCATE of the tables and all their partitions, for everyone; idempotent. */
    installTruncateGuard: async (input: GuardInput): Promise<void> => {
      await ensureHelperSchema(pools.get(input.connection));
      for (const table of input.tables) {
        await lockedTransaction(input.connection, async (client) => {
          const partitions = await partitionsOf(client, table);
          for (const relation of [quoteTable(table), ...partitions]) {
            await client.query(createTruncateGuardSql(input.migration, relation));
          }
          await registry.setPartitions(client, input.migration, table, partitions);
        });
      }
    },

    /** Lets TRUNCATE through again (the migration is ending); idempotent. */
    removeTruncateGuard: async (input: GuardInput): Promise<void> => {
      const name = quoteIdent(truncateGuardName(input.migration));
      const pool = pools.get(input.connection);
      const claimed = (await registry.present(pool))
        ? await registry.rows(pool, input.migration, input.tables)
        : [];
      for (const table of input.tables) {
        await lockedTransaction(input.connection, async (client) => {
          // Its partitions now, and those it had (one detached keeps the trigger it was given).
          const recorded = claimed.find(
            (row) => row.table.schema === table.schema && row.table.table === table.table,
          );
          const relations = [
            quoteTable(table),
            ...(await partitionsOf(client, table)),
            ...(recorded?.partitions ?? []),
          ];
          for (const relation of new Set(relations)) {
            const exists = await client.query<{ present: boolean }>(
              `SELECT to_regclass($1) IS NOT NULL AS present`,
              [relation],
            );
            if (exists.rows[0]?.present === true)
              await client.query(`DROP TRIGGER IF EXISTS ${name} ON ${relation}`);
          }
        });
      }
    },

    /** Makes the tables (and their partitions) refuse writes from anyone but the migration's role; idempotent. */
    installWriteGuard: async (input: GuardInput): Promise<void> => {
      await ensureHelperSchema(pools.get(input.connection));
      const name = quoteIdent(writeGuardName(input.migration));
      const role = input.servers[input.connection].role;
      for (const table of input.tables) {
        await lockedTransaction(input.connection, async (client) => {
          await client.query(`DROP TRIGGER IF EXISTS ${name} ON ${quoteTable(table)}`);
          await client.query(
            `CREATE TRIGGER ${name} BEFORE INSERT OR UPDATE OR DELETE ON ${quoteTable(table)}
               FOR EACH ROW EXECUTE FUNCTION ${HELPER_SCHEMA}.refuse_writes(${quoteLiteral(input.migration)}, ${quoteLiteral(role)})`,
          );
          await registry.mark(client, input.migration, table, { guarded: true });
        });
      }
    },

    /** Lets everyone write the tables again; idempotent. */
    removeWriteGuard: async (input: GuardInput): Promise<void> => {
      const name = quoteIdent(writeGuardName(input.migration));
      for (const table of input.tables) {
        await lockedTransaction(input.connection, async (client) => {
          const exists = await client.query<{ present: boolean }>(
            `SELECT to_regclass($1) IS NOT NULL AS present`,
            [quoteTable(table)],
          );
          if (exists.rows[0]?.present !== true) return;
          await client.query(`DROP TRIGGER IF EXISTS ${name} ON ${quoteTable(table)}`);
          await registry.mark(client, input.migration, table, { guarded: false });
        });
      }
    },
  };
}
