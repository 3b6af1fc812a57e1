// Retiring a migration's helpers from one side (retire and abort): the migration's own rows in the
// stage store, the router registry, the table registry (its claims) and the change log, and, when no
// other migration and no trigger still uses it, the whole helper schema (change log, chunk
// checkpoints, tombstones, staging, flags). Capture and guards are removed first by their own
// activities. Never touches a user table or its rows, nor another migration's rows.
import type { ConnectionName } from '../model/connections';
import { HELPER_SCHEMA } from '../db/helper-schema';
import { withTransaction, type NamedPools } from '../db/pools';
import type { ServerBinding } from '../model/servers';

export interface HelperRemoval {
  /** The helper schema is gone. */
  dropped: boolean;
  /** Why it stayed, when it did. */
  kept?: string;
}

export function createHelperRemoval(pools: NamedPools) {
  return {
    removeMigrationHelpers: async (input: {
      servers: ServerBinding;
      connection: ConnectionName;
      migration: string;
    }): Promise<HelperRemoval> => {
      return withTransaction(pools.get(input.connection), async (client) => {
        const exists = await client.query<{ present: boolean }>(
          `SELECT to_regnamespace($1) IS NOT NULL AS present`,
          [HELPER_SCHEMA],
        );
        if (exists.rows[0]?.present !== true) return { dropped: true };
        const present = async (table: string) =>
          (
            await client.query<{ present: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS present`, [
              `${HELPER_SCHEMA}.${table}`,
            ])
          ).rows[0]?.present === true;
        for (const table of ['stages', 'routers', 'migration_tables', 'change_log']) {
          if (await present(table)) {
            await client.query(`DELETE FROM ${HELPER_SCHEMA}.${table} WHERE migration = $1`, [
              input.migration,
            ]);
          }
        }
        const others = (
          await client.query<{ migration: string }>(
            `SELECT DISTINCT migration FROM (
               ${(await present('stages')) ? `SELECT migration FROM ${HELPER_SCHEMA}.stages UNION ALL` : ''}
               ${(await present('migration_tables')) ? `SELECT migration FROM ${HELPER_SCHEMA}.migration_tables UNION ALL` : ''}
               SELECT NULL::text WHERE false) AS m ORDER BY 1 LIMIT 5`,
          )
        ).rows;
        if (others.length > 0) {
          return {
            dropped: false,
            kept: `other migrations use it: ${others.map((row) => row.migration).join(', ')}`,
          };
        }
        const triggers = await client.query<{ trigger: string }>(
          `SELECT format('%s on %s', t.tgname, t.tgrelid::regclass) AS trigger
             FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
            WHERE p.pronamespace = to_regnamespace($1) AND NOT t.tgisinternal
            LIMIT 5`,
          [HELPER_SCHEMA],
        );
        if (triggers.rows.length > 0) {
          return {
            dropped: false,
            kept: `triggers still use it: ${triggers.rows.map((row) => row.trigger).join(', ')}`,
          };
        }
        await client.query(`DROP SCHEMA ${HELPER_SCHEMA} CASCADE`);
        return { dropped: true };
      });
    },
  };
}
