// Change capture on the authoritative side: a trigger on each migrated table writes the key of
// every inserted, updated or deleted row into the change log, in the writer's own transaction, so
// writers that never go through the router (cron jobs, psql, other services) are not missed
// (hazard 6). A rolled-back write leaves no entry. Installing waits for in-flight writers of the
// table (CREATE TRIGGER's lock), so every write that commits afterwards is captured. For a router's
// session the trigger also notes the key for the router itself (helper-schema.ts, note_written).
import type { ConnectionName } from '../config/connections';
import { COLLECT_SETTING, ensureHelperSchema, HELPER_SCHEMA } from './helper-schema';
import { refuse, type TableRef, type TableShape } from './inspector';
import { withTransaction, type ConnectionPools } from './pools';
import { quoteIdent, quoteLiteral, quoteTable } from './sql';
import type { TableShapes } from './table-shapes';

export const CAPTURE_TRIGGER = 'live_migrate_capture';
const TRUNCATE_GUARD = 'live_migrate_refuse_truncate';

/** How long installing waits for a writer's lock before giving up (the activity then retries). */
const INSTALL_LOCK_TIMEOUT = '5s';

function captureFunction(table: TableRef): string {
  return `${HELPER_SCHEMA}.${quoteIdent(`capture_${table.schema}_${table.table}`.slice(0, 63))}`;
}

function captureFunctionSql(shape: TableShape): string {
  const keyOf = (row: 'OLD' | 'NEW') =>
    `jsonb_build_array(${shape.primaryKey.map((column) => `${row}.${quoteIdent(column)}`).join(', ')})`;
  const tuple = (row: 'OLD' | 'NEW') =>
    `(${shape.primaryKey.map((column) => `${row}.${quoteIdent(column)}`).join(', ')})`;
  const names = `${quoteLiteral(shape.table.schema)}, ${quoteLiteral(shape.table.table)}`;
  const insert = (row: 'OLD' | 'NEW') =>
    `INSERT INTO ${HELPER_SCHEMA}.change_log (table_schema, table_name, key) VALUES (${names}, ${keyOf(row)});
     IF collect THEN PERFORM ${HELPER_SCHEMA}.note_written(${names}, ${keyOf(row)}); END IF;`;
  // SECURITY DEFINER: every writer of the table may log, without rights on the helper schema.
  return `CREATE OR REPLACE FUNCTION ${captureFunction(shape.table)}() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $capture$
    DECLARE
      collect boolean := current_setting('${COLLECT_SETTING}', true) = 'on';
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

const TRUNCATE_GUARD_FUNCTION = `CREATE OR REPLACE FUNCTION ${HELPER_SCHEMA}.refuse_truncate() RETURNS trigger
  LANGUAGE plpgsql AS $guard$
  BEGIN
    RAISE EXCEPTION 'TRUNCATE of %.% is refused while it is being migrated: its rows would stay on the new side. Delete the rows instead, or remove change capture first.', TG_TABLE_SCHEMA, TG_TABLE_NAME;
  END
  $guard$`;

export function createCapture(pools: ConnectionPools, shapes: TableShapes) {
  return {
    /** Installs (or re-installs, identically) capture on the tables; idempotent. */
    installChangeCapture: async (input: {
      connection: ConnectionName;
      tables: TableRef[];
    }): Promise<void> => {
      const pool = pools.get(input.connection);
      await ensureHelperSchema(pool);
      for (const table of input.tables) {
        const shape = await shapes.get(input.connection, table);
        await withTransaction(pool, async (client) => {
          await client.query(`SET LOCAL lock_timeout = '${INSTALL_LOCK_TIMEOUT}'`);
          await client.query(captureFunctionSql(shape));
          await client.query(TRUNCATE_GUARD_FUNCTION);
          await client.query(`DROP TRIGGER IF EXISTS ${CAPTURE_TRIGGER} ON ${quoteTable(table)}`);
          await client.query(
            `CREATE TRIGGER ${CAPTURE_TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON ${quoteTable(table)}
               FOR EACH ROW EXECUTE FUNCTION ${captureFunction(table)}()`,
          );
          await client.query(`DROP TRIGGER IF EXISTS ${TRUNCATE_GUARD} ON ${quoteTable(table)}`);
          await client.query(
            `CREATE TRIGGER ${TRUNCATE_GUARD} BEFORE TRUNCATE ON ${quoteTable(table)}
               FOR EACH STATEMENT EXECUTE FUNCTION ${HELPER_SCHEMA}.refuse_truncate()`,
          );
        });
      }
    },

    /**
     * Removes capture from the tables. Refuses while the change log still holds their entries
     * (they would be lost) unless `discardPending` says the caller knows they are not needed.
     */
    removeChangeCapture: async (input: {
      connection: ConnectionName;
      tables: TableRef[];
      discardPending?: boolean;
    }): Promise<void> => {
      const pool = pools.get(input.connection);
      for (const table of input.tables) {
        await withTransaction(pool, async (client) => {
          await client.query(`SET LOCAL lock_timeout = '${INSTALL_LOCK_TIMEOUT}'`);
          await client.query(`DROP TRIGGER IF EXISTS ${CAPTURE_TRIGGER} ON ${quoteTable(table)}`);
          await client.query(`DROP TRIGGER IF EXISTS ${TRUNCATE_GUARD} ON ${quoteTable(table)}`);
          await client.query(`DROP FUNCTION IF EXISTS ${captureFunction(table)}()`);
          const hasLog = await client.query<{ exists: boolean }>(
            `SELECT to_regclass('${HELPER_SCHEMA}.change_log') IS NOT NULL AS exists`,
          );
          if (hasLog.rows[0]?.exists !== true) return;
          const pending = await client.query<{ count: string }>(
            `SELECT count(*) AS count FROM ${HELPER_SCHEMA}.change_log WHERE table_schema = $1 AND table_name = $2`,
            [table.schema, table.table],
          );
          const count = Number(pending.rows[0]?.count ?? 0);
          if (count > 0 && input.discardPending !== true) {
            throw refuse(
              `change capture on ${quoteTable(table)} still has ${count} changes that have not reached the other side; let reconciliation drain them first`,
            );
          }
          await client.query(
            `DELETE FROM ${HELPER_SCHEMA}.change_log WHERE table_schema = $1 AND table_name = $2`,
            [table.schema, table.table],
          );
        });
      }
    },
  };
}
