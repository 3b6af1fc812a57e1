// The baseline an operator would script by hand: one `COPY ... TO STDOUT (FORMAT binary)` on old
// streamed straight into `COPY ... FROM STDIN (FORMAT binary)` on new, through this process.
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { quoteTable } from '../../db/sql';
import type { TableRef } from '../../model/tables';

/** Copies every row of `table` from source to target (which must have the table); returns the row count. */
export async function copyTableBinary(
  sourceUrl: string,
  targetUrl: string,
  table: TableRef,
): Promise<number> {
  const source = new pg.Client({ connectionString: sourceUrl, application_name: 'bench copy out' });
  const target = new pg.Client({ connectionString: targetUrl, application_name: 'bench copy in' });
  try {
    await Promise.all([source.connect(), target.connect()]);
    const name = quoteTable(table);
    const reader = source.query(copyTo(`COPY (SELECT * FROM ${name}) TO STDOUT (FORMAT binary)`));
    const writer = target.query(copyFrom(`COPY ${name} FROM STDIN (FORMAT binary)`));
    await pipeline(reader, writer);
    return writer.rowCount;
  } finally {
    await Promise.allSettled([source.end(), target.end()]);
  }
}
