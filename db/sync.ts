// Sync, the core the migration's syncer and the router's mirror share: makes keys on the side being
// filled equal to the authoritative side. For each key it re-reads the current row from the
// authoritative side and inserts, updates or deletes on the other, all under the table's sync lock
// (see apply-locks.ts), so the result is the same however often or concurrently a key is synced. A
// deleted key leaves a tombstone that keeps the backfill off it. No Temporal here: errors are the
// database's own; the activities decide which of them heal by retrying (activities/syncer.ts).
import type pg from 'pg';
import type { ConnectionName } from '../model/connections';
import type { TableRef, TableShape } from '../model/tables';
import { mirrorLocksSql, syncLockSql } from './apply-locks';
import { HELPER_SCHEMA } from './helper-schema';
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
export interface SyncHooks {
  afterRowsRead?: (input: SyncKeysInput) => Promise<void>;
}

export function createSync(pools: NamedPools, shapes: SyncShapes, hooks: SyncHooks = {}) {
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

  /** Syncs keys under the table's sync lock, durably; `checked` gives the shapes when already checked. */
  async function syncKeys(input: SyncKeysInput, checked: SyncShapes = shapes): Promise<SyncKeysResult> {
    const keys = uniqueKeys(input.keys);
    if (keys.length === 0) return { keys: 0, upserted: 0, deleted: 0 };
    return (await applyKeys(input, keys, { lock: 'table', durable: true, shapes: checked }))!;
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

  return { syncKeys, mirrorKeys };
}
