// Copier: moves one chunk of rows, chosen by keyset (the next N keys after a given key), from the
// source connection to the target. Keys travel as text; rows never leave the activity.
import type { ConnectionName } from '../config/connections';
import type { TableRef } from './inspector';
import type { ConnectionPools } from './pools';
import { quoteIdent, quoteList, quoteTable } from './sql';

export interface CopyChunkInput {
  source: ConnectionName;
  target: ConnectionName;
  table: TableRef;
  primaryKey: string[];
  /** The last key copied (text form of each key column), or null to start at the smallest key. */
  after: string[] | null;
  limit: number;
}

export interface CopyChunkResult {
  rowsRead: number;
  rowsWritten: number;
  /** The largest key of this chunk, or null when the chunk was empty. */
  lastKey: string[] | null;
}

export function createCopier(pools: ConnectionPools) {
  return {
    async copyChunk(input: CopyChunkInput): Promise<CopyChunkResult> {
      const table = quoteTable(input.table);
      const keyList = quoteList(input.primaryKey);
      const keyText = input.primaryKey.map((column) => `${quoteIdent(column)}::text`).join(', ');
      const params: unknown[] = [];
      let where = '';
      if (input.after !== null) {
        params.push(...input.after);
        where = `WHERE (${keyList}) > (${input.after.map((_, i) => `$${i + 1}`).join(', ')})`;
      }
      params.push(input.limit);
      const read = await pools.get(input.source).query<{ row: unknown; key: string[] }>(
        `SELECT to_jsonb(t) AS row, ARRAY[${keyText}] AS key
           FROM ${table} AS t ${where}
          ORDER BY ${keyList}
          LIMIT $${params.length}`,
        params,
      );
      if (read.rows.length === 0) return { rowsRead: 0, rowsWritten: 0, lastKey: null };
      // A key already on the target was written there by something newer than this read: keep it.
      const written = await pools.get(input.target).query(
        `INSERT INTO ${table}
         SELECT * FROM jsonb_populate_recordset(NULL::${table}, $1::jsonb)
         ON CONFLICT (${keyList}) DO NOTHING`,
        [JSON.stringify(read.rows.map((r) => r.row))],
      );
      return {
        rowsRead: read.rows.length,
        rowsWritten: written.rowCount ?? 0,
        lastKey: read.rows[read.rows.length - 1]?.key ?? null,
      };
    },
  };
}
