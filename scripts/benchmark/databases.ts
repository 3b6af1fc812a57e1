// Database chores of the benchmark: a fresh target database per method, the source table's size,
// housekeeping between methods, and a cheap whole-table fingerprint to check new equals old.
import pg from 'pg';
import { quoteIdent, quoteTable } from '../../db/sql';
import type { TableRef } from '../../model/tables';

/** Session settings that make `row::text` identical on both servers, whatever their defaults. */
const CANONICAL_TEXT = '-c TimeZone=UTC -c DateStyle=ISO -c extra_float_digits=3 -c bytea_output=hex';

/** The same server URL with another database. */
export function databaseUrl(serverUrl: string, database: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

/** Runs `work` on one fresh connection, closed afterwards. */
export async function withClient<T>(url: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url, options: CANONICAL_TEXT });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

/** Drops (if present) and creates `database` on the server of `serverUrl`; returns its URL. */
export async function createFreshDatabase(serverUrl: string, database: string): Promise<string> {
  await withClient(databaseUrl(serverUrl, 'postgres'), async (client) => {
    await client.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`);
    await client.query(`CREATE DATABASE ${quoteIdent(database)}`);
  });
  return databaseUrl(serverUrl, database);
}

export async function dropDatabase(serverUrl: string, database: string): Promise<void> {
  await withClient(databaseUrl(serverUrl, 'postgres'), (client) =>
    client.query(`DROP DATABASE IF EXISTS ${quoteIdent(database)} WITH (FORCE)`),
  );
}

export interface TableSize {
  rows: number;
  avgRowBytes: number;
  heapBytes: number;
  totalBytes: number;
}

export async function measureTable(url: string, table: TableRef): Promise<TableSize> {
  return withClient(url, async (client) => {
    const { rows } = await client.query<{ rows: string; avg: string; heap: string; total: string }>(
      `SELECT count(*) AS rows,
              coalesce(avg(pg_column_size(t.*)), 0) AS avg,
              pg_table_size($1::regclass) AS heap,
              pg_total_relation_size($1::regclass) AS total
         FROM ${quoteTable(table)} AS t`,
      [quoteTable(table)],
    );
    const row = rows[0]!;
    return {
      rows: Number(row.rows),
      avgRowBytes: Number(row.avg),
      heapBytes: Number(row.heap),
      totalBytes: Number(row.total),
    };
  });
}

/**
 * VACUUM ANALYZE then CHECKPOINT: sets hint bits and the visibility map so that no method pays for
 * the previous one's writes, and starts each method with no dirty buffers to flush.
 */
export async function settleTable(url: string, table: TableRef): Promise<void> {
  await withClient(url, async (client) => {
    await client.query(`VACUUM (ANALYZE) ${quoteTable(table)}`);
    await client.query('CHECKPOINT');
  });
}

export async function checkpoint(url: string): Promise<void> {
  await withClient(url, (client) => client.query('CHECKPOINT'));
}

export interface TableFingerprint {
  rows: number;
  /** Sum of a 64-bit hash of every row's text form: independent of row order and physical layout. */
  hash: string;
}

/**
 * Count and an order-independent hash of every row, every column, computed on the server: one
 * sequential scan, nothing but two numbers over the wire. Equal fingerprints on the same major
 * and canonical session settings mean the same rows (up to a 64-bit hash-sum collision).
 */
export async function fingerprintTable(url: string, table: TableRef): Promise<TableFingerprint> {
  return withClient(url, async (client) => {
    const { rows } = await client.query<{ rows: string; hash: string }>(
      `SELECT count(*) AS rows, coalesce(sum(hashtextextended(t::text, 0)), 0)::text AS hash
         FROM ${quoteTable(table)} AS t`,
    );
    return { rows: Number(rows[0]!.rows), hash: rows[0]!.hash };
  });
}

export function sameFingerprint(a: TableFingerprint, b: TableFingerprint): boolean {
  return a.rows === b.rows && a.hash === b.hash;
}

export async function serverVersion(url: string): Promise<string> {
  return withClient(url, async (client) => {
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    return rows[0]!.server_version;
  });
}
