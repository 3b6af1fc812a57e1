// Syncer: the migration's side of sync (db/sync.ts). Syncs keys as an activity, a failure retrying
// cannot heal leaving at once with the table and the database's words (or, when a schema change
// caused it, as that schema change). Drains the change log that capture fills: each entry names a
// key to sync. A table whose sync fails for good (a constraint the other side enforces, a schema
// change) is reported and its entries kept, while every other table goes on syncing: one table never
// blocks the rest.
import { Context } from '@temporalio/activity';
import { createSync, type SyncKeysInput, type SyncKeysResult, type SyncShapes } from '../db/sync';
import { HELPER_SCHEMA } from '../db/helper-schema';
import { changeLogBacklog } from '../db/change-log';
import type { NamedPools } from '../db/pools';
import type { ConnectionName } from '../model/connections';
import { MigrationFault } from '../model/errors';
import type { TableRef } from '../model/tables';
import { asActivityFailure, isTransient, sqlState } from './failures';

export interface DrainChangeLogInput {
  migration: string;
  /** The side whose change log is drained (where capture is installed: the authoritative side). */
  from: ConnectionName;
  to: ConnectionName;
  batchSize: number;
  /** Tables (schema.table) to leave for now: their sync failed and waits for its next try. */
  skipTables?: string[];
}

/** A table whose entries could not be synced and stay in the log. */
export interface TableSyncFailure {
  /** schema.table */
  table: string;
  /** The database's words, or why the check refused. */
  message: string;
  /** SQLSTATE or failure type, e.g. 23505 or SchemaChanged. */
  code: string | null;
  /** Entries of this batch left in the log. */
  entries: number;
}

export interface DrainChangeLogResult {
  /** Entries synced and removed from the log in this batch. */
  entries: number;
  keys: number;
  upserted: number;
  deleted: number;
  /** Entries still in the log after this batch (counted up to BACKLOG_COUNT_LIMIT). */
  backlog: number;
  /** Age in seconds of the oldest entry still in the log; 0 when it is empty. */
  lagSeconds: number;
  /** Tables whose sync failed for good in this batch; their entries stay. */
  failed: TableSyncFailure[];
}

/** For tests: widen the window between reading the authoritative rows and applying them. */
export interface SyncerHooks {
  afterRowsRead?: (input: SyncKeysInput) => Promise<void>;
  /**
   * Before each drain batch: the shapes the batch's syncs go by, every table checked at once (the
   * worker's also covers partitions attached since the last look). Without it, each sync checks
   * its own table.
   */
  batchShapes?: (input: DrainChangeLogInput) => Promise<SyncShapes>;
}

/** A failure's code for reports: its SQLSTATE (kept in a SyncFailed's details), else its failure type. */
function failureCode(err: unknown): string | null {
  if (err instanceof MigrationFault) {
    const state = err.details?.sqlState;
    return typeof state === 'string' ? state : err.type;
  }
  return sqlState(err) ?? null;
}

export function createSyncer(pools: NamedPools, shapes: SyncShapes, hooks: SyncerHooks = {}) {
  const core = createSync(pools, shapes, {
    ...(hooks.afterRowsRead !== undefined && { afterRowsRead: hooks.afterRowsRead }),
  });

  /**
   * Syncs keys; a failure that retrying cannot heal leaves as a fault naming the table (and, when a
   * schema change caused it, as that schema change).
   */
  async function syncKeys(input: SyncKeysInput, checked: SyncShapes = shapes): Promise<SyncKeysResult> {
    try {
      return await core.syncKeys(input, checked);
    } catch (err) {
      if (isTransient(err)) throw err;
      // A column that vanished or changed type shows as a database error here: say what changed.
      await shapes.forSync(input);
      throw asActivityFailure(err, input.table, input.to);
    }
  }

  return {
    syncKeys: (input: SyncKeysInput) => syncKeys(input),

    /**
     * Syncs the keys of the oldest `batchSize` change log entries, then deletes exactly those entries
     * (by id: a transaction that took a smaller id may commit later and is read next time). Killed
     * between the two, the entries are read and synced again, which changes nothing.
     */
    drainChangeLog: async (input: DrainChangeLogInput): Promise<DrainChangeLogResult> => {
      const log = pools.get(input.from);
      const checked = (await hooks.batchShapes?.(input)) ?? shapes;
      const skip = input.skipTables ?? [];
      const batch = await log.query<{ id: string; table_schema: string; table_name: string; key: string[] }>(
        `SELECT id, table_schema, table_name,
                ARRAY(SELECT jsonb_array_elements_text(key)) AS key
           FROM ${HELPER_SCHEMA}.change_log
          WHERE migration = $1 AND NOT (table_schema || '.' || table_name = ANY($3::text[]))
          ORDER BY id LIMIT $2`,
        [input.migration, input.batchSize, skip],
      );
      const byTable = new Map<string, { table: TableRef; keys: string[][]; ids: string[] }>();
      for (const entry of batch.rows) {
        const id = `${entry.table_schema}.${entry.table_name}`;
        const group = byTable.get(id) ?? {
          table: { schema: entry.table_schema, table: entry.table_name },
          keys: [],
          ids: [],
        };
        group.keys.push(entry.key);
        group.ids.push(entry.id);
        byTable.set(id, group);
      }
      const result = { entries: 0, keys: 0, upserted: 0, deleted: 0 };
      const failed: TableSyncFailure[] = [];
      const applied: string[] = [];
      for (const [name, group] of byTable) {
        try {
          const synced = await syncKeys(
            {
              migration: input.migration,
              from: input.from,
              to: input.to,
              table: group.table,
              keys: group.keys,
            },
            checked,
          );
          result.keys += synced.keys;
          result.upserted += synced.upserted;
          result.deleted += synced.deleted;
          applied.push(...group.ids);
        } catch (err) {
          // A lost connection: retry the whole batch. Anything else stays with its table.
          if (isTransient(err)) throw err;
          failed.push({
            table: name,
            message: err instanceof Error ? err.message : String(err),
            code: failureCode(err),
            entries: group.ids.length,
          });
        }
        Context.current().heartbeat();
      }
      result.entries = applied.length;
      if (applied.length > 0) {
        await log.query(`DELETE FROM ${HELPER_SCHEMA}.change_log WHERE id = ANY($1::bigint[])`, [applied]);
      }
      return {
        ...result,
        ...(await changeLogBacklog(log, input.migration)),
        failed,
      };
    },
  };
}
