// Change capture on the authoritative side: a trigger on each migrated table writes the key of
// every inserted, updated or deleted row into the change log, in the writer's own transaction, so
// writers that never go through the router (cron jobs, psql, other services) are not missed
// (hazard 6). A rolled-back write leaves no entry. A row trigger on a partitioned table is cloned by
// PostgreSQL to every partition, present and attached later, so a write straight into a partition
// is captured too. Installing waits for in-flight writers of the table (CREATE TRIGGER's lock), so
// every write that commits afterwards is captured. For a router's session the trigger also notes
// the key for the router itself (helper-schema.ts, note_written).
// Everything here is the migration's own: the trigger and its function are named for it and each
// entry carries its name, so two migrations on one database never drain or remove each other's.
// TRUNCATE is refused by the TRUNCATE guard (write-guard.ts), on both sides.
import type { ConnectionName } from '../model/connections';
import { COLLECT_SETTING, ensureHelperSchema, HELPER_SCHEMA, migrationObjectName } from '../db/helper-schema';
import { refuse } from '../model/errors';
import type { TableRef, TableShape } from '../model/tables';
import { withTransaction, type NamedPools } from '../db/pools';
import type { ServerBinding } from '../model/servers';
import { quoteIdent, quoteLiteral, quoteTable } from '../db/sql';
import type { TableRegistry } from './table-registry';

/** How long installing waits for a writer's lock before giving up (the activity then retries). */
const INSTALL_LOCK_TIMEOUT = '5s';

export interface CaptureInput {
  migration: string;
  servers: ServerBinding;
  connection: ConnectionName;
  tables: TableRef[];
}

export function captureTriggerName(migration: string): string {
  return migrationObjectName('lm_capture', migration);
}

function captureFunction(migration: string, table: TableRef): string {
  return `${HELPER_SCHEMA}.${quoteIdent(migrationObjectName('capture', migration, `${table.schema}.${table.table}`))}`;
}

function captureFunctionSql(migration: string, shape: TableShape): string {
  const keyOf = (row: 'OLD' | 'NEW') =>
    `jsonb_build_array(${shape.primaryKey.map((column) => `${row}.${quoteIdent(column)}`).join(', ')})`;
  const tuple = (row: 'OLD' | 'NEW') =>
    `(${shape.primaryKey.map((column) => `${row}.${quoteIdent(column)}`).join(', ')})`;
  const names = `${quoteLiteral(shape.table.schema)}, ${quoteLiteral(shape.table.table)}`;
  // The entry's id goes with the noted key: once the router's mirror applied the key, it deletes
  // exactly that entry, so reconciliation does not sync the key a second time.
  const insert = (row: 'OLD' | 'NEW') =>
    `INSERT INTO ${HELPER_SCHEMA}.change_log (migration, table_schema, table_name, key) VALUES (${quoteLiteral(migration)}, ${names}, ${keyOf(row)})
       RETURNING id INTO entry;
     IF collect THEN PERFORM ${HELPER_SCHEMA}.note_written(${names}, ${keyOf(row)}, entry); END IF;`;
  // SECURITY DEFINER: every writer of the table may log, without rights on the helper schema.
  return `CREATE OR REPLACE FUNCTION ${captureFunction(migration, shape.table)}() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $capture$
    DECLARE
      collect boolean := current_setting('${COLLECT_SETTING}', true) = 'on';
      entry bigint;
    BEGIN
      IF TG_OP <> 'INSERT' THEN
        ${insert('OLD')}
      END IF;
      IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND ${tuple('OLD')} IS DISTINCT FROM ${tuple('NEW')}) THEN
        ${insert('NEW')}
      END IF;
      RETURN NULL;
    END
    $capture$`;
}

export function createCapture(pools: NamedPools, registry: TableRegistry) {
  return {
    /** Installs (or re-installs, identically) capture on the tables; idempotent. */
    installChangeCapture: async (input: CaptureInput): Promise<void> => {
      const pool = pools.get(input.connection);
      await ensureHelperSchema(pool);
      const trigger = quoteIdent(captureTriggerName(input.migration));
      for (const table of input.tables) {
        const shape = await registry.shape(input.connection, input.migration, table);
        await withTransaction(pool, async (client) => {
          await client.query(`SET LOCAL lock_timeout = '${INSTALL_LOCK_TIMEOUT}'`);
          await client.query(captureFunctionSql(input.migration, shape));
          await client.query(`DROP TRIGGER IF EXISTS ${trigger} ON ${quoteTable(table)}`);
          await client.query(
            `CREATE TRIGGER ${trigger} AFTER INSERT OR UPDATE OR DELETE ON ${quoteTable(table)}
               FOR EACH ROW EXECUTE FUNCTION ${captureFunction(input.migration, table)}()`,
          );
          await registry.mark(client, input.migration, table, { captured: true });
        });
      }
    },

    /**
     * Removes the migration's capture from the tables. Refuses while the change log still holds its
     * entries for them (they would be lost) unless `discardPending` says the caller knows they are
     * not needed. Another migration's capture and entries are never touched.
     */
    removeChangeCapture: async (input: CaptureInput & { discardPending?: boolean }): Promise<void> => {
      const pool = pools.get(input.connection);
      const trigger = quoteIdent(captureTriggerName(input.migration));
      for (const table of input.tables) {
        await withTransaction(pool, async (client) => {
          await client.query(`SET LOCAL lock_timeout = '${INSTALL_LOCK_TIMEOUT}'`);
          const exists = await client.query<{ table: boolean; log: boolean }>(
            `SELECT to_regclass($1) IS NOT NULL AS table, to_regclass('${HELPER_SCHEMA}.change_log') IS NOT NULL AS log`,
            [quoteTable(table)],
          );
          if (exists.rows[0]?.table === true) {
            await client.query(`DROP TRIGGER IF EXISTS ${trigger} ON ${quoteTable(table)}`);
          }
          await client.query(`DROP FUNCTION IF EXISTS ${captureFunction(input.migration, table)}()`);
          if (exists.rows[0]?.log !== true) return;
          const where = `migration = $1 AND table_schema = $2 AND table_name = $3`;
          const params = [input.migration, table.schema, table.table];
          const pending = await client.query<{ count: string }>(
            `SELECT count(*) AS count FROM ${HELPER_SCHEMA}.change_log WHERE ${where}`,
            params,
          );
          const count = Number(pending.rows[0]?.count ?? 0);
          if (count > 0 && input.discardPending !== true) {
            throw refuse(
              `change capture on ${quoteTable(table)} still has ${count} changes that have not reached the other side; let reconciliation drain them first`,
            );
          }
          await client.query(`DELETE FROM ${HELPER_SCHEMA}.change_log WHERE ${where}`, params);
          await registry.mark(client, input.migration, table, { captured: false });
        });
      }
    },
  };
}
