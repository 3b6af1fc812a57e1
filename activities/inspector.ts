// Inspector: reads what a table is (columns, types, primary key, rough size) before any data moves,
// and refuses what cannot be migrated safely with a message that says why.
import { ApplicationFailure } from '@temporalio/common';
import type { ConnectionName } from '../config/connections';
import type { ConnectionPools } from './pools';
import { quoteTable } from './sql';

export interface TableRef {
  schema: string;
  table: string;
}

export interface ColumnShape {
  name: string;
  /** format_type() of the column, e.g. "numeric(12,2)" or "text[]". */
  type: string;
  notNull: boolean;
}

export interface TableShape {
  table: TableRef;
  columns: ColumnShape[];
  /** Primary key columns, in key order. */
  primaryKey: string[];
  estimatedRows: number;
  totalBytes: number;
}

export const REFUSAL = 'MigrationRefused';

export function refuse(message: string): ApplicationFailure {
  return ApplicationFailure.create({ type: REFUSAL, message, nonRetryable: true });
}

export function createInspector(pools: ConnectionPools) {
  return {
    async describeTable(input: { connection: ConnectionName; table: TableRef }): Promise<TableShape> {
      const pool = pools.get(input.connection);
      const name = quoteTable(input.table);
      const found = await pool.query<{ oid: number; estimated_rows: string; total_bytes: string }>(
        `SELECT c.oid, greatest(c.reltuples, 0)::bigint AS estimated_rows, pg_total_relation_size(c.oid) AS total_bytes
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
        [input.table.schema, input.table.table],
      );
      const table = found.rows[0];
      if (table === undefined) {
        throw refuse(
          `table ${name} does not exist on the ${input.connection} database (${pools.display(input.connection)})`,
        );
      }
      const columns = await pool.query<ColumnShape>(
        `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS "notNull"
           FROM pg_attribute a
          WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY a.attnum`,
        [table.oid],
      );
      const key = await pool.query<{ name: string }>(
        `SELECT a.attname AS name
           FROM pg_index i
           CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
           JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
          WHERE i.indrelid = $1 AND i.indisprimary
          ORDER BY k.position`,
        [table.oid],
      );
      if (key.rows.length === 0) {
        throw refuse(
          `table ${name} on the ${input.connection} database has no primary key; rows cannot be matched between old and new without one: add a primary key, then start again`,
        );
      }
      return {
        table: input.table,
        columns: columns.rows,
        primaryKey: key.rows.map((row) => row.name),
        estimatedRows: Number(table.estimated_rows),
        totalBytes: Number(table.total_bytes),
      };
    },
  };
}
