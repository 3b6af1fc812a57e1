// A Citus target (new as a Citus coordinator): whether the server has Citus, which column a table is
// distributed by, distributing a table, and which of a table's constraints keep a distribution
// column from being valid (Citus needs it in the primary key and in every unique constraint).
import type pg from 'pg';
import type { TableRef } from '../model/tables';
import type { TableDefinition } from './table-definition';
import { quoteTable } from './sql';

/** True when the server has the citus extension (create_distributed_table exists). */
export async function hasCitus(pool: pg.Pool): Promise<boolean> {
  const { rows } = await pool.query<{ citus: boolean }>(
    `SELECT to_regproc('create_distributed_table') IS NOT NULL AS citus`,
  );
  return rows[0]?.citus === true;
}

/** The column the table is distributed by, or null when Citus does not distribute it (a local table). */
export async function distributionColumnOf(pool: pg.Pool, table: TableRef): Promise<string | null> {
  const { rows } = await pool.query<{ column: string | null }>(
    `SELECT column_to_column_name(logicalrelid, partkey) AS column
       FROM pg_dist_partition WHERE logicalrelid = $1::regclass`,
    [quoteTable(table)],
  );
  return rows[0]?.column ?? null;
}

/** Distributes an empty table by `column` (hash distribution, Citus' default shard count). */
export async function distributeTable(pool: pg.Pool, table: TableRef, column: string): Promise<void> {
  await pool.query(`SELECT create_distributed_table($1, $2)`, [quoteTable(table), column]);
}

/**
 * Why `column` cannot distribute the table, or null when it can: it must be a column of the table,
 * in its primary key (the copy and the sync write with ON CONFLICT on the primary key, which then
 * includes it) and in every unique constraint.
 */
export function distributionColumnProblem(definition: TableDefinition, column: string): string | null {
  if (!definition.columns.some((c) => c.name === column)) {
    return `${quoteTable(definition.table)} has no column ${column}`;
  }
  const without = definition.constraints.filter(
    (constraint) =>
      (constraint.kind === 'primary key' || constraint.kind === 'unique') &&
      !constraint.columns.includes(column),
  );
  if (without.length === 0) return null;
  return `Citus distributes ${quoteTable(definition.table)} by ${column} only when its primary key and every unique constraint include it, and ${without
    .map((c) => `${c.kind} ${c.name} (${c.columns.join(', ')})`)
    .join(', ')} do${without.length === 1 ? 'es' : ''} not`;
}
