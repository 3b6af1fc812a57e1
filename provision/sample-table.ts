// A sample table for the demo, tests and benchmarks: about ten columns of the types that make
// migrations go wrong (numeric, jsonb, arrays, bytea, timestamptz, NULLs, unicode text).
import type pg from 'pg';
import { quoteTable } from '../db/sql';
import type { TableRef } from '../model/tables';

export function sampleTableDdl(table: TableRef): string {
  return `CREATE TABLE IF NOT EXISTS ${quoteTable(table)} (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    status text NOT NULL,
    amount numeric(14, 2),
    currency char(3) NOT NULL DEFAULT 'EUR',
    tags text[],
    attributes jsonb,
    payload bytea,
    note text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz
  )`;
}

/** Inserts rows with ids first..first+count-1 on sparse keys (id * step), deterministically. */
export async function seedSampleRows(
  pool: pg.Pool,
  table: TableRef,
  count: number,
  options: { first?: number; step?: number } = {},
): Promise<void> {
  const first = options.first ?? 1;
  const step = options.step ?? 1;
  await pool.query(
    `INSERT INTO ${quoteTable(table)}
     SELECT g * $3::bigint,
            (g * 7919) % 100000,
            (ARRAY['new', 'paid', 'shipped', 'cancelled'])[1 + g % 4],
            CASE WHEN g % 17 = 0 THEN NULL ELSE round((g % 100000) * 1.37, 2) END,
            'EUR',
            CASE WHEN g % 5 = 0 THEN NULL ELSE ARRAY['t' || g % 13, 'ünïcødé-' || g % 7] END,
            CASE WHEN g % 3 = 0 THEN NULL ELSE jsonb_build_object('n', g, 'src', 'seed', 'nested', jsonb_build_object('ok', g % 2 = 0)) END,
            CASE WHEN g % 11 = 0 THEN NULL ELSE decode(md5(g::text), 'hex') END,
            CASE WHEN g % 9 = 0 THEN NULL ELSE 'note ' || g || ' — 日本語 ✓' END,
            timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute',
            CASE WHEN g % 2 = 0 THEN NULL ELSE timestamptz '2024-06-01 12:00:00.123456+02' + g * interval '1 second' END
       FROM generate_series($1::bigint, $2::bigint) AS g`,
    [first, first + count - 1, step],
  );
}
