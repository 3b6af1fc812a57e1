// Moves rows between servers the fast way: a binary COPY out of the source, streamed straight into a
// session-local staging table on the target (from there one INSERT ... SELECT applies them, so the
// caller decides, in its own transaction, which rows win) or into the table itself when nothing can
// conflict. Rows never pass through JavaScript values.
import { createHash } from 'node:crypto';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import type { TableShape } from '../model/tables';
import { withSession } from './pools';
import { quoteIdent, quoteList, quoteTable } from './sql';

const createdStaging = new WeakMap<pg.ClientBase, Set<string>>();

/** The staging table for `shape` on this session: created once per session, emptied at every commit. */
export async function ensureStaging(client: pg.ClientBase, shape: TableShape): Promise<string> {
  const digest = createHash('sha1').update(`${shape.table.schema}.${shape.table.table}`).digest('hex');
  const name = quoteIdent(`live_migrate_stage_${digest.slice(0, 16)}`);
  const created = createdStaging.get(client) ?? new Set<string>();
  if (!created.has(name)) {
    await client.query(
      `CREATE TEMP TABLE IF NOT EXISTS ${name} ON COMMIT DELETE ROWS AS
         SELECT ${quoteList(shape.copyColumns)} FROM ${quoteTable(shape.table)} WITH NO DATA`,
    );
    created.add(name);
    createdStaging.set(client, created);
  }
  return name;
}

/**
 * Streams the rows `selectSql` returns on the source into `destination` (a staging table, or the
 * table itself when nothing there can conflict) on the target session, which the caller holds inside
 * its transaction. `selectSql` must return `shape.copyColumns` in that order. Returns the row count.
 */
export async function copyRowsAcross(
  source: pg.Pool,
  target: pg.ClientBase,
  destination: string,
  shape: TableShape,
  selectSql: string,
): Promise<number> {
  return withSession(source, async (reader) => {
    const out = reader.query(copyTo(`COPY (${selectSql}) TO STDOUT (FORMAT binary)`));
    const into = target.query(
      copyFrom(`COPY ${destination} (${quoteList(shape.copyColumns)}) FROM STDIN (FORMAT binary)`),
    );
    await pipeline(out, into);
    return into.rowCount ?? 0;
  });
}
