// Verifier: compares a table on old and new row by row (every column, by primary key order).
// This full comparison serves the demo and the tests; chunked checksums come with verification.
import type pg from 'pg';
import type { TableRef } from '../model/tables';
import { quoteList, quoteTable } from './sql';

export interface TableComparison {
  rowsOld: number;
  rowsNew: number;
  /** Keys (as text) present on one side only or with different contents; at most `sampleSize`. */
  differences: { key: string; kind: 'missing-on-new' | 'extra-on-new' | 'different' }[];
  differenceCount: number;
}

async function readAll(pool: pg.Pool, table: TableRef, primaryKey: string[]): Promise<Map<string, string>> {
  const keys = quoteList(primaryKey);
  const client = await pool.connect();
  try {
    // One snapshot, and timestamps rendered the same way on both servers whatever their TimeZone.
    await client.query(`BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL TimeZone = 'UTC'`);
    const result = await client.query<{ key: string; row: string }>(
      `SELECT row(${keys})::text AS key, to_jsonb(t)::text AS row FROM ${quoteTable(table)} AS t ORDER BY ${keys}`,
    );
    await client.query('COMMIT');
    return new Map(result.rows.map((r) => [r.key, r.row]));
  } finally {
    client.release();
  }
}

export async function compareTables(
  oldPool: pg.Pool,
  newPool: pg.Pool,
  table: TableRef,
  primaryKey: string[],
  sampleSize = 20,
): Promise<TableComparison> {
  const [oldRows, newRows] = await Promise.all([
    readAll(oldPool, table, primaryKey),
    readAll(newPool, table, primaryKey),
  ]);
  const differences: TableComparison['differences'] = [];
  let differenceCount = 0;
  const note = (key: string, kind: TableComparison['differences'][number]['kind']) => {
    differenceCount += 1;
    if (differences.length < sampleSize) differences.push({ key, kind });
  };
  for (const [key, row] of oldRows) {
    const other = newRows.get(key);
    if (other === undefined) note(key, 'missing-on-new');
    else if (other !== row) note(key, 'different');
  }
  for (const key of newRows.keys()) if (!oldRows.has(key)) note(key, 'extra-on-new');
  return { rowsOld: oldRows.size, rowsNew: newRows.size, differences, differenceCount };
}
