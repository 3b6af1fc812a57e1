// The baselines an operator would script by hand: `COPY ... TO STDOUT (FORMAT binary)` on old
// streamed straight into `COPY ... FROM STDIN (FORMAT binary)` on new, through this process, as one
// stream (copyTableBinary) or in chunks each committed on its own (copyTableInChunks).
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';
import { quoteTable } from '../../db/sql';
import type { TableRef } from '../../model/tables';
import { withClient } from './databases';

/** Runs `work` on one fresh session on each side, both closed afterwards. */
async function withSessionPair<T>(
  sourceUrl: string,
  targetUrl: string,
  label: string,
  work: (source: pg.Client, target: pg.Client) => Promise<T>,
): Promise<T> {
  const source = new pg.Client({ connectionString: sourceUrl, application_name: `bench ${label} out` });
  const target = new pg.Client({ connectionString: targetUrl, application_name: `bench ${label} in` });
  try {
    await Promise.all([source.connect(), target.connect()]);
    return await work(source, target);
  } finally {
    await Promise.allSettled([source.end(), target.end()]);
  }
}

/** Streams the rows of `name` matching `where` by binary COPY from source into target; returns the row count. */
async function pipeRows(source: pg.Client, target: pg.Client, name: string, where: string): Promise<number> {
  const reader = source.query(
    copyTo(`COPY (SELECT * FROM ${name} WHERE ${where}) TO STDOUT (FORMAT binary)`),
  );
  const writer = target.query(copyFrom(`COPY ${name} FROM STDIN (FORMAT binary)`));
  await pipeline(reader, writer);
  return writer.rowCount;
}

/** Copies every row of `table` from source to target (which must have the table); returns the row count. */
export async function copyTableBinary(
  sourceUrl: string,
  targetUrl: string,
  table: TableRef,
): Promise<number> {
  return withSessionPair(sourceUrl, targetUrl, 'copy', (source, target) =>
    pipeRows(source, target, quoteTable(table), 'true'),
  );
}

/**
 * The floor of the backfill's own design, scripted by hand: the same rows in chunks of `chunkRows`
 * (keys `keyStep` apart, as the benchmark seeds them), each streamed by binary COPY into the
 * pre-created table (primary key in place) and committed in its own transaction, over `lanes`
 * sessions per side, with no marker, lock, check or orchestration. What the backfill costs beyond
 * it is orchestration; what it costs beyond one COPY stream is the chunking the design keeps.
 */
export async function copyTableInChunks(
  sourceUrl: string,
  targetUrl: string,
  table: TableRef,
  options: { chunkRows: number; keyStep: number; lanes: number },
): Promise<number> {
  const name = quoteTable(table);
  const span = options.chunkRows * options.keyStep;
  const maxKey = await withClient(sourceUrl, async (client) => {
    const found = await client.query<{ max: string | null }>(`SELECT max(id)::text AS max FROM ${name}`);
    return Number(found.rows[0]?.max ?? 0);
  });
  let next = 0;
  let copied = 0;
  const lane = (n: number) =>
    withSessionPair(sourceUrl, targetUrl, `chunk ${n}`, async (source, target) => {
      for (let lower = next; lower < maxKey; lower = next) {
        next = lower + span;
        await target.query('BEGIN');
        const rows = await pipeRows(source, target, name, `id > ${lower} AND id <= ${lower + span}`);
        await target.query('COMMIT');
        copied += rows;
      }
    });
  await Promise.all(Array.from({ length: options.lanes }, (_, n) => lane(n)));
  return copied;
}
