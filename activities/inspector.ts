// Inspector: reads what a table is (columns, types, primary key, rough size) before any data moves,
// and refuses what cannot be migrated safely with a message that says why.
import { ApplicationFailure } from '@temporalio/common';
import type pg from 'pg';
import type { ConnectionName } from '../config/connections';
import { ensureHelperSchema } from './helper-schema';
import type { ConnectionPools } from './pools';
import { quoteIdent, quoteList, quoteTable } from './sql';

export interface TableRef {
  schema: string;
  table: string;
}

export interface ColumnShape {
  name: string;
  /** format_type() of the column, e.g. "numeric(12,2)" or "text[]". */
  type: string;
  notNull: boolean;
  /** A generated column: computed on each side, never copied. */
  generated?: boolean;
}

export interface TableShape {
  table: TableRef;
  columns: ColumnShape[];
  /** Primary key columns, in key order. */
  primaryKey: string[];
  /** format_type() of each primary key column, in key order: keys travel as text and are cast back. */
  primaryKeyTypes: string[];
  /** Columns that rows are copied by (every column but generated ones), in the table's order. */
  copyColumns: string[];
  /** The table has a GENERATED ALWAYS identity column: inserts of copied values must override it. */
  identityAlways: boolean;
  estimatedRows: number;
  totalBytes: number;
}

export const REFUSAL = 'MigrationRefused';

export function refuse(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: REFUSAL, message, nonRetryable: true });
}

async function findTable(
  pool: pg.Pool,
  table: TableRef,
): Promise<{ oid: number; estimated_rows: string; total_bytes: string } | undefined> {
  const found = await pool.query<{ oid: number; estimated_rows: string; total_bytes: string }>(
    `SELECT c.oid, greatest(c.reltuples, 0)::bigint AS estimated_rows, pg_total_relation_size(c.oid) AS total_bytes
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
    [table.schema, table.table],
  );
  return found.rows[0];
}

/** CREATE TABLE for new from old's shape: columns, types, NOT NULL and the primary key. */
export function createTableSql(shape: TableShape): string {
  const columns = shape.columns.map(
    (column) => `${quoteIdent(column.name)} ${column.type}${column.notNull ? ' NOT NULL' : ''}`,
  );
  return `CREATE TABLE IF NOT EXISTS ${quoteTable(shape.table)} (${[
    ...columns,
    `PRIMARY KEY (${quoteList(shape.primaryKey)})`,
  ].join(', ')})`;
}

/** Reads a table's shape from the catalog; refuses a missing table or one without a primary key. */
export async function readTableShape(
  pool: pg.Pool,
  table: TableRef,
  side: { name: ConnectionName; display: string },
): Promise<TableShape> {
  const name = quoteTable(table);
  const found = await findTable(pool, table);
  if (found === undefined) {
    throw refuse(`table ${name} does not exist on the ${side.name} database (${side.display})`);
  }
  const columns = await pool.query<ColumnShape & { identity: string }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS "notNull",
            a.attgenerated <> '' AS generated, a.attidentity AS identity
       FROM pg_attribute a
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [found.oid],
  );
  const key = await pool.query<{ name: string; type: string }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_index i
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = $1 AND i.indisprimary
      ORDER BY k.position`,
    [found.oid],
  );
  if (key.rows.length === 0) {
    throw refuse(
      `table ${name} on the ${side.name} database has no primary key; rows cannot be matched between old and new without one: add a primary key, then start again`,
    );
  }
  return {
    table,
    columns: columns.rows.map(({ name: column, type, notNull, generated }) => ({
      name: column,
      type,
      notNull,
      ...(generated === true && { generated }),
    })),
    primaryKey: key.rows.map((row) => row.name),
    primaryKeyTypes: key.rows.map((row) => row.type),
    copyColumns: columns.rows.filter((column) => column.generated !== true).map((column) => column.name),
    identityAlways: columns.rows.some((column) => column.identity === 'a'),
    estimatedRows: Number(found.estimated_rows),
    totalBytes: Number(found.total_bytes),
  };
}

export function createInspector(pools: ConnectionPools) {
  function describeTable(input: { connection: ConnectionName; table: TableRef }): Promise<TableShape> {
    return readTableShape(pools.get(input.connection), input.table, {
      name: input.connection,
      display: pools.display(input.connection),
    });
  }

  return {
    describeTable,

    /**
     * Checks, before any row moves, that the target table can take the source's rows faithfully;
     * creates it from the source's definition when asked and it does not exist. Returns the
     * source's shape. Refuses (non-retryable) with the list of differences otherwise.
     */
    prepareTargetTable: async (input: {
      source: ConnectionName;
      target: ConnectionName;
      table: TableRef;
      createIfMissing: boolean;
    }): Promise<TableShape> => {
      const sourceShape = await describeTable({ connection: input.source, table: input.table });
      const targetPool = pools.get(input.target);
      if ((await findTable(targetPool, input.table)) === undefined) {
        if (!input.createIfMissing) {
          throw refuse(
            `table ${quoteTable(input.table)} does not exist on the ${input.target} database (${pools.display(input.target)}): create it with the same definition as on ${input.source}, or set createTables: true to let the migration create it`,
          );
        }
        try {
          await targetPool.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(input.table.schema)}`);
          await targetPool.query(createTableSql(sourceShape));
        } catch (err) {
          throw refuse(
            `cannot create ${quoteTable(input.table)} on the ${input.target} database: ${(err as Error).message}; create it yourself (types and extensions it uses must exist there)`,
          );
        }
      }
      const targetShape = await describeTable({ connection: input.target, table: input.table });
      const differences = compareTableShapes(sourceShape, targetShape);
      if (differences.length > 0) throw refuse(describeDifferences(input.table, differences));
      await ensureHelperSchema(targetPool);
      return sourceShape;
    },
  };
}

export interface ShapeDifference {
  column: string;
  problem: string;
}

/**
 * What differs between old's and new's definition of a table, column by column. Column order may
 * differ (rows are copied by column name); names, types, NOT NULL and the primary key may not.
 */
export function compareTableShapes(oldShape: TableShape, newShape: TableShape): ShapeDifference[] {
  const differences: ShapeDifference[] = [];
  const newColumns = new Map(newShape.columns.map((column) => [column.name, column]));
  for (const column of oldShape.columns) {
    const other = newColumns.get(column.name);
    if (other === undefined) {
      differences.push({ column: column.name, problem: `missing on new (old has ${column.type})` });
      continue;
    }
    newColumns.delete(column.name);
    if (other.type !== column.type) {
      differences.push({ column: column.name, problem: `type ${column.type} on old, ${other.type} on new` });
    }
    if ((other.generated ?? false) !== (column.generated ?? false)) {
      differences.push({
        column: column.name,
        problem: column.generated ? 'generated on old, a plain column on new' : 'generated on new only',
      });
    }
    if (other.notNull && !column.notNull) {
      differences.push({ column: column.name, problem: 'NOT NULL on new but nullable on old' });
    }
  }
  for (const column of newColumns.values()) {
    if (column.notNull) {
      differences.push({
        column: column.name,
        problem: `only on new, NOT NULL (${column.type}): old rows cannot fill it`,
      });
    } else {
      differences.push({ column: column.name, problem: `only on new (${column.type})` });
    }
  }
  if (oldShape.primaryKey.join(',') !== newShape.primaryKey.join(',')) {
    differences.push({
      column: '(primary key)',
      problem: `(${oldShape.primaryKey.join(', ')}) on old, (${newShape.primaryKey.join(', ') || 'none'}) on new`,
    });
  }
  return differences;
}

export function describeDifferences(table: TableRef, differences: ShapeDifference[]): string {
  const lines = differences.map((d) => `${d.column}: ${d.problem}`);
  return `table ${quoteTable(table)} differs between old and new, so rows would not copy faithfully: ${lines.join('; ')}. Make new's definition match old's, or drop the table on new and let the migration create it`;
}
