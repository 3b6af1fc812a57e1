// Syncer: makes keys on the side being filled equal to the authoritative side. For each key it
// re-reads the current row from the authoritative side and inserts, updates or deletes on the other,
// all under the table's sync lock (see apply-locks.ts), so the result is the same however often or
// concurrently a key is synced. A deleted key leaves a tombstone that keeps the backfill off it.
// Also drains the change log that capture fills: each entry names a key to sync. A table whose sync
// fails for good (a constraint the other side enforces, a schema change) is reported and its entries
// kept, while every other table goes on syncing: one table never blocks the rest.
import { ApplicationFailure, Context } from '@temporalio/activity';
import type pg from 'pg';
import type { ConnectionName } from '../config/connections';
import { mirrorLocksSql, syncLockSql } from './apply-locks';
import { asActivityFailure, isTransient, sqlState } from './failures';
import { HELPER_SCHEMA } from './helper-schema';
import type { TableRef, TableShape } from './inspector';
import { withSession, type NamedPools } from './pools';
import { keyLiteral, quoteIdent, quoteList, quoteLiteral, quoteTable } from './sql';
import { copyRowsAcross, ensureStaging } from './staging';

/** Where a sync gets the shape its rows are read and written by. */
export interface SyncShapes {
  /**
   * The shape of `table` for a sync from `from` to `to`. The worker's checks both sides against the
   * migration's registry (a schema change refuses); the router's reads the catalog.
   */
  forSync(input: {
    migration: string;
    from: ConnectionName;
    to: ConnectionName;
    table: TableRef;
  }): Promise<TableShape>;
}

export interface SyncKeysInput {
  migration: string;
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

const BACKLOG_COUNT_LIMIT = 1_000_000;

function valuesList(shape: TableShape, keys: string[][]): string {
  return keys.map((key) => keyLiteral(key, shape.primaryKeyTypes)).join(', ');
}

/**
 * Up to this many keys are read as text and applied from a VALUES list (one round trip each way, no
 * staging table to empty at commit: what a router's mirror of a few rows needs); more stream through
 * a binary COPY into the staging table.
 */
const VALUES_LIMIT = 64;

/** Rows to apply, as something a FROM clause can name: the staging table or a VALUES subquery. */
interface ReadRows {
  from: string;
  rows: number;
}

/** Reads the rows `where` selects as text, and returns them as a typed VALUES subquery. */
async function readAsValues(source: pg.Pool, shape: TableShape, where: string): Promise<ReadRows> {
  const types = new Map(shape.columns.map((column) => [column.name, column.type]));
  const typed = (column: string, value: string | null) =>
    value === null ? `NULL::${types.get(column)!}` : `${quoteLiteral(value)}::${types.get(column)!}`;
  const { rows } = await source.query<string[]>({
    text: `SELECT ${shape.copyColumns.map((column) => `${quoteIdent(column)}::text`).join(', ')}
             FROM ${quoteTable(shape.table)} WHERE ${where}`,
    rowMode: 'array',
  });
  if (rows.length === 0) {
    const nulls = shape.copyColumns.map((column) => `${typed(column, null)} AS ${quoteIdent(column)}`);
    return { from: `(SELECT ${nulls.join(', ')} WHERE false)`, rows: 0 };
  }
  const values = rows.map(
    (row) => `(${row.map((value, i) => typed(shape.copyColumns[i]!, value)).join(', ')})`,
  );
  return {
    from: `(SELECT * FROM (VALUES ${values.join(', ')}) AS v (${quoteList(shape.copyColumns)}))`,
    rows: rows.length,
  };
}

function upsertSql(shape: TableShape, rows: string): string {
  const columns = quoteList(shape.copyColumns);
  // Neither the key nor an always-generated identity can be set by an update (nor do they change).
  const fixed = new Set([...shape.primaryKey, ...shape.alwaysIdentity]);
  const updates = shape.copyColumns
    .filter((column) => !fixed.has(column))
    .map((column) => `${quoteIdent(column)} = EXCLUDED.${quoteIdent(column)}`);
  return `INSERT INTO ${quoteTable(shape.table)} (${columns})
          ${shape.alwaysIdentity.length > 0 ? 'OVERRIDING SYSTEM VALUE' : ''}
          SELECT ${columns} FROM ${rows} AS staged
          ON CONFLICT (${quoteList(shape.primaryKey)})
          ${updates.length > 0 ? `DO UPDATE SET ${updates.join(', ')}` : 'DO NOTHING'}`;
}

/** Deletes the synced keys the authoritative side no longer has, and tombstones them. */
function deleteGoneSql(shape: TableShape, rows: string, keys: string[][]): string {
  const names = `${quoteLiteral(shape.table.schema)}, ${quoteLiteral(shape.table.table)}`;
  const keyColumns = shape.primaryKey.map((_, i) => `k${i}`);
  const match = (alias: string) =>
    shape.primaryKey.map((column, i) => `${alias}.${quoteIdent(column)} = gone.k${i}`).join(' AND ');
  return `WITH wanted (${keyColumns.join(', ')}) AS (VALUES ${valuesList(shape, keys)}),
          gone AS (
            SELECT * FROM wanted w
             WHERE NOT EXISTS (SELECT 1 FROM ${rows} s WHERE (${shape.primaryKey
               .map((column) => `s.${quoteIdent(column)}`)
               .join(', ')}) = (${keyColumns.map((k) => `w.${k}`).join(', ')}))),
          tombstoned AS (
            INSERT INTO ${HELPER_SCHEMA}.tombstones (table_schema, table_name, key)
            SELECT ${names}, ARRAY[${keyColumns.map((k) => `gone.${k}::text`).join(', ')}] FROM gone
            ON CONFLICT DO NOTHING)
          DELETE FROM ${quoteTable(shape.table)} AS t USING gone WHERE ${match('t')}`;
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
  if (err instanceof ApplicationFailure) {
    const details = err.details?.[0] as { sqlState?: string | null } | undefined;
    return details?.sqlState ?? err.type ?? null;
  }
  return sqlState(err) ?? null;
}

export function createSyncer(pools: NamedPools, shapes: SyncShapes, hooks: SyncerHooks = {}) {
  /**
   * Applies the authoritative rows of `keys` to the other side in one transaction: lock, read, then
   * delete what is gone (tombstoned) and upsert the rest. `lock: 'keys'` (a mirror) locks only the
   * keys and gives up, returning undefined, when a key turns out deleted: deletes take the table lock.
   * `durable: false` commits without waiting for the WAL flush (the change log still holds the keys).
   */
  async function applyKeys(
    input: SyncKeysInput,
    keys: string[][],
    how: { lock: 'table' | 'keys'; durable: boolean; shapes: SyncShapes },
  ): Promise<SyncKeysResult | undefined> {
    const shape = await how.shapes.forSync(input);
    return withSession(pools.get(input.to), async (target) => {
      // Lock first, read second: of two syncs of one key, the one that reads later applies later.
      await target.query(
        `BEGIN; ${how.durable ? '' : 'SET LOCAL synchronous_commit = off;'}
         ${how.lock === 'table' ? syncLockSql(input.table) : mirrorLocksSql(input.table, keys)}`,
      );
      const where = `(${quoteList(shape.primaryKey)}) IN (${valuesList(shape, keys)})`;
      let read: ReadRows;
      if (keys.length <= VALUES_LIMIT) {
        read = await readAsValues(pools.get(input.from), shape, where);
      } else {
        const staging = await ensureStaging(target, shape);
        const rows = await copyRowsAcross(
          pools.get(input.from),
          target,
          staging,
          shape,
          `SELECT ${quoteList(shape.copyColumns)} FROM ${quoteTable(input.table)} WHERE ${where}`,
        );
        read = { from: staging, rows };
      }
      await hooks.afterRowsRead?.(input);
      if (how.lock === 'keys' && read.rows < keys.length) {
        await target.query('ROLLBACK');
        return undefined;
      }
      // Deletes first: a row gone from the authoritative side may hold a unique value (an email, a
      // slug) that a row of the same batch now carries.
      const statements = read.rows < keys.length ? [deleteGoneSql(shape, read.from, keys)] : [];
      statements.push(upsertSql(shape, read.from), 'COMMIT');
      const results = (await target.query(statements.join(';\n'))) as unknown as pg.QueryResult[];
      return {
        keys: keys.length,
        upserted: results[statements.length - 2]?.rowCount ?? 0,
        deleted: statements.length === 3 ? (results[0]?.rowCount ?? 0) : 0,
      };
    });
  }

  function uniqueKeys(keys: string[][]): string[][] {
    return [...new Map(keys.map((key) => [JSON.stringify(key), key])).values()];
  }

  /**
   * Syncs keys; a failure that retrying cannot heal leaves as a non-retryable failure naming the
   * table (and, when a schema change caused it, as that schema change).
   */
  async function syncKeys(input: SyncKeysInput, checked: SyncShapes = shapes): Promise<SyncKeysResult> {
    const keys = uniqueKeys(input.keys);
    if (keys.length === 0) return { keys: 0, upserted: 0, deleted: 0 };
    try {
      return (await applyKeys(input, keys, { lock: 'table', durable: true, shapes: checked }))!;
    } catch (err) {
      if (isTransient(err)) throw err;
      // A column that vanished or changed type shows as a database error here: say what changed.
      await shapes.forSync(input);
      throw asActivityFailure(err, input.table, input.to);
    }
  }

  /**
   * The router's mirror of writes it just committed on the authoritative side: like syncKeys, but
   * mirrors of different keys of a table run side by side, and the commit does not wait for the WAL
   * flush (capture logged the keys in the writer's transaction; reconciliation brings them again).
   */
  async function mirrorKeys(input: SyncKeysInput): Promise<SyncKeysResult> {
    const keys = uniqueKeys(input.keys);
    if (keys.length === 0) return { keys: 0, upserted: 0, deleted: 0 };
    const mirrored = await applyKeys(input, keys, { lock: 'keys', durable: false, shapes });
    return mirrored ?? (await applyKeys(input, keys, { lock: 'table', durable: false, shapes }))!;
  }

  return {
    syncKeys: (input: SyncKeysInput) => syncKeys(input),
    mirrorKeys,

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
      const status = await log.query<{ backlog: string; lag: number | null }>(
        `SELECT (SELECT count(*) FROM (SELECT 1 FROM ${HELPER_SCHEMA}.change_log WHERE migration = $2 LIMIT $1) AS c) AS backlog,
                extract(epoch FROM clock_timestamp() - (SELECT logged_at FROM ${HELPER_SCHEMA}.change_log WHERE migration = $2 ORDER BY id LIMIT 1))::float8 AS lag`,
        [BACKLOG_COUNT_LIMIT, input.migration],
      );
      return {
        ...result,
        backlog: Number(status.rows[0]?.backlog ?? 0),
        lagSeconds: Math.max(0, status.rows[0]?.lag ?? 0),
        failed,
      };
    },
  };
}
