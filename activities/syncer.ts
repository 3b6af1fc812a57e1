// Syncer: makes keys on the side being filled equal to the authoritative side. For each key it
// re-reads the current row from the authoritative side and inserts, updates or deletes on the other,
// all under the table's sync lock (see apply-locks.ts), so the result is the same however often or
// concurrently a key is synced. A deleted key leaves a tombstone that keeps the backfill off it.
// Also drains the change log that capture fills: each entry names a key to sync.
import { Context } from '@temporalio/activity';
import type { ConnectionName } from '../config/connections';
import { lockForSync } from './apply-locks';
import { ensureHelperSchema, HELPER_SCHEMA } from './helper-schema';
import type { TableRef, TableShape } from './inspector';
import { withSession, type ConnectionPools } from './pools';
import { keyLiteral, quoteIdent, quoteList, quoteTable } from './sql';
import { copyRowsAcross, ensureStaging } from './staging';
import type { TableShapes } from './table-shapes';

export interface SyncKeysInput {
  /** The authoritative side: its current rows are the truth. */
  from: ConnectionName;
  to: ConnectionName;
  table: TableRef;
  /** Keys as text, one value per primary key column. */
  keys: string[][];
}

export interface SyncKeysResult {
  keys: number;
  upserted: number;
  deleted: number;
}

export interface DrainChangeLogInput {
  /** The side whose change log is drained (where capture is installed: the authoritative side). */
  from: ConnectionName;
  to: ConnectionName;
  batchSize: number;
}

export interface DrainChangeLogResult {
  entries: number;
  keys: number;
  upserted: number;
  deleted: number;
  /** Entries still in the log after this batch (counted up to BACKLOG_COUNT_LIMIT). */
  backlog: number;
  /** Age in seconds of the oldest entry still in the log; 0 when it is empty. */
  lagSeconds: number;
}

const BACKLOG_COUNT_LIMIT = 1_000_000;

function valuesList(shape: TableShape, keys: string[][]): string {
  return keys.map((key) => keyLiteral(key, shape.primaryKeyTypes)).join(', ');
}

function upsertSql(shape: TableShape, staging: string): string {
  const columns = quoteList(shape.copyColumns);
  const key = new Set(shape.primaryKey);
  const updates = shape.copyColumns
    .filter((column) => !key.has(column))
    .map((column) => `${quoteIdent(column)} = EXCLUDED.${quoteIdent(column)}`);
  return `INSERT INTO ${quoteTable(shape.table)} (${columns})
          ${shape.identityAlways ? 'OVERRIDING SYSTEM VALUE' : ''}
          SELECT ${columns} FROM ${staging}
          ON CONFLICT (${quoteList(shape.primaryKey)})
          ${updates.length > 0 ? `DO UPDATE SET ${updates.join(', ')}` : 'DO NOTHING'}`;
}

/** Deletes the synced keys the authoritative side no longer has, and tombstones them. */
function deleteGoneSql(shape: TableShape, staging: string, keys: string[][]): string {
  const keyColumns = shape.primaryKey.map((_, i) => `k${i}`);
  const match = (alias: string) =>
    shape.primaryKey.map((column, i) => `${alias}.${quoteIdent(column)} = gone.k${i}`).join(' AND ');
  return `WITH wanted (${keyColumns.join(', ')}) AS (VALUES ${valuesList(shape, keys)}),
          gone AS (
            SELECT * FROM wanted w
             WHERE NOT EXISTS (SELECT 1 FROM ${staging} s WHERE (${shape.primaryKey
               .map((column) => `s.${quoteIdent(column)}`)
               .join(', ')}) = (${keyColumns.map((k) => `w.${k}`).join(', ')}))),
          tombstoned AS (
            INSERT INTO ${HELPER_SCHEMA}.tombstones (table_schema, table_name, key)
            SELECT $1, $2, ARRAY[${keyColumns.map((k) => `gone.${k}::text`).join(', ')}] FROM gone
            ON CONFLICT DO NOTHING)
          DELETE FROM ${quoteTable(shape.table)} AS t USING gone WHERE ${match('t')}`;
}

export function createSyncer(pools: ConnectionPools, shapes: TableShapes) {
  // The helper tables, once per worker and side: the side being filled needs the tombstone table and
  // the drained side the change log; a backfill creates both, but reconciliation may come first.
  const helpersReady = new Map<ConnectionName, Promise<void>>();
  function ensureHelpers(connection: ConnectionName): Promise<void> {
    let ready = helpersReady.get(connection);
    if (ready === undefined) {
      ready = ensureHelperSchema(pools.get(connection));
      ready.catch(() => helpersReady.delete(connection));
      helpersReady.set(connection, ready);
    }
    return ready;
  }

  async function syncKeys(input: SyncKeysInput): Promise<SyncKeysResult> {
    const unique = [...new Map(input.keys.map((key) => [JSON.stringify(key), key])).values()];
    if (unique.length === 0) return { keys: 0, upserted: 0, deleted: 0 };
    await ensureHelpers(input.to);
    const shape = await shapes.get(input.from, input.table);
    return withSession(pools.get(input.to), async (target) => {
      const staging = await ensureStaging(target, shape);
      await target.query('BEGIN');
      // Lock first, read second: of two syncs of one key, the one that reads later applies later.
      await lockForSync(target, input.table);
      const keyColumns = `(${quoteList(shape.primaryKey)})`;
      await copyRowsAcross(
        pools.get(input.from),
        target,
        staging,
        shape,
        `SELECT ${quoteList(shape.copyColumns)} FROM ${quoteTable(input.table)}
          WHERE ${keyColumns} IN (${valuesList(shape, unique)})`,
      );
      // Deletes first: a row gone from the authoritative side may hold a unique value (an email, a
      // slug) that a row of the same batch now carries.
      const deleted = await target.query(deleteGoneSql(shape, staging, unique), [
        input.table.schema,
        input.table.table,
      ]);
      const upserted = await target.query(upsertSql(shape, staging));
      await target.query('COMMIT');
      return { keys: unique.length, upserted: upserted.rowCount ?? 0, deleted: deleted.rowCount ?? 0 };
    });
  }

  return {
    syncKeys,

    /**
     * Syncs the keys of the oldest `batchSize` change log entries, then deletes exactly those entries
     * (by id: a transaction that took a smaller id may commit later and is read next time). Killed
     * between the two, the entries are read and synced again, which changes nothing.
     */
    drainChangeLog: async (input: DrainChangeLogInput): Promise<DrainChangeLogResult> => {
      const log = pools.get(input.from);
      // Reconciliation may start before the first backfill installs capture: the log is then empty.
      await ensureHelpers(input.from);
      const batch = await log.query<{ id: string; table_schema: string; table_name: string; key: string[] }>(
        `SELECT id, table_schema, table_name,
                ARRAY(SELECT jsonb_array_elements_text(key)) AS key
           FROM ${HELPER_SCHEMA}.change_log ORDER BY id LIMIT $1`,
        [input.batchSize],
      );
      const byTable = new Map<string, { table: TableRef; keys: string[][] }>();
      for (const entry of batch.rows) {
        const id = JSON.stringify([entry.table_schema, entry.table_name]);
        const group = byTable.get(id) ?? {
          table: { schema: entry.table_schema, table: entry.table_name },
          keys: [],
        };
        group.keys.push(entry.key);
        byTable.set(id, group);
      }
      const result = { entries: batch.rows.length, keys: 0, upserted: 0, deleted: 0 };
      for (const group of byTable.values()) {
        const synced = await syncKeys({
          from: input.from,
          to: input.to,
          table: group.table,
          keys: group.keys,
        });
        result.keys += synced.keys;
        result.upserted += synced.upserted;
        result.deleted += synced.deleted;
        Context.current().heartbeat();
      }
      if (batch.rows.length > 0) {
        await log.query(`DELETE FROM ${HELPER_SCHEMA}.change_log WHERE id = ANY($1::bigint[])`, [
          batch.rows.map((entry) => entry.id),
        ]);
      }
      const status = await log.query<{ backlog: string; lag: number | null }>(
        `SELECT (SELECT count(*) FROM (SELECT 1 FROM ${HELPER_SCHEMA}.change_log LIMIT $1) AS c) AS backlog,
                extract(epoch FROM clock_timestamp() - (SELECT logged_at FROM ${HELPER_SCHEMA}.change_log ORDER BY id LIMIT 1))::float8 AS lag`,
        [BACKLOG_COUNT_LIMIT],
      );
      return {
        ...result,
        backlog: Number(status.rows[0]?.backlog ?? 0),
        lagSeconds: Math.max(0, status.rows[0]?.lag ?? 0),
      };
    },
  };
}
