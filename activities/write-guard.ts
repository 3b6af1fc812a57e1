// The write guard: after the switch, old must take no write but the migration's own (the reverse
// sync from new, repairs), or both sides would accept writes (hazard 7's split brain). A statement
// trigger on each migrated table refuses INSERT, UPDATE and DELETE from any session that does not
// say it is the migration (live_migrate.writer = migration, which the migration's own connections
// set at startup: activities/pools.ts). The refusal uses SQLSTATE 25006 (read-only transaction), so
// an application sees the error it would see on a read-only replica. Installed and removed
// idempotently; rollback to old authority removes it.
import type { ConnectionName } from '../config/connections';
import { ensureHelperSchema, HELPER_SCHEMA, WRITER_SETTING } from './helper-schema';
import type { TableRef } from './inspector';
import { withTransaction, type NamedPools } from './pools';
import { quoteTable } from './sql';

export const WRITE_GUARD_TRIGGER = 'live_migrate_write_guard';
const LOCK_TIMEOUT = '5s';

const GUARD_FUNCTION = `CREATE OR REPLACE FUNCTION ${HELPER_SCHEMA}.refuse_writes() RETURNS trigger
  LANGUAGE plpgsql AS $guard$
  BEGIN
    IF current_setting('${WRITER_SETTING}', true) IS DISTINCT FROM 'migration' THEN
      RAISE EXCEPTION 'writes to %.% are refused: this table has moved to the new database', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'read_only_sql_transaction',
              HINT = 'write through the migration''s router, which sends writes to the new database';
    END IF;
    RETURN NULL;
  END
  $guard$`;

export function createWriteGuard(pools: NamedPools) {
  return {
    /** Makes the tables refuse writes from anyone but the migration; idempotent. */
    installWriteGuard: async (input: { connection: ConnectionName; tables: TableRef[] }): Promise<void> => {
      const pool = pools.get(input.connection);
      await ensureHelperSchema(pool);
      for (const table of input.tables) {
        await withTransaction(pool, async (client) => {
          await client.query(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
          await client.query(GUARD_FUNCTION);
          await client.query(`DROP TRIGGER IF EXISTS ${WRITE_GUARD_TRIGGER} ON ${quoteTable(table)}`);
          await client.query(
            `CREATE TRIGGER ${WRITE_GUARD_TRIGGER} BEFORE INSERT OR UPDATE OR DELETE ON ${quoteTable(table)}
               FOR EACH STATEMENT EXECUTE FUNCTION ${HELPER_SCHEMA}.refuse_writes()`,
          );
        });
      }
    },

    /** Lets everyone write the tables again; idempotent. */
    removeWriteGuard: async (input: { connection: ConnectionName; tables: TableRef[] }): Promise<void> => {
      const pool = pools.get(input.connection);
      for (const table of input.tables) {
        await withTransaction(pool, async (client) => {
          await client.query(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
          await client.query(`DROP TRIGGER IF EXISTS ${WRITE_GUARD_TRIGGER} ON ${quoteTable(table)}`);
        });
      }
    },
  };
}
