// Key ranges: how the backfill divides a table without ever doing arithmetic on keys. Partitions
// come from a sample of the key column(s); chunks from walking the primary key index (the next N
// keys). Works the same for bigint, uuid, text and composite keys, sparse or skewed.
import { Context } from '@temporalio/activity';
import type { ConnectionName } from '../model/connections';
import type { TableRef, TableShape } from '../model/tables';
import type { ConnectionPools } from '../db/pools';
import type { ServerBinding } from '../model/servers';
import { keyLiteral, keyTextArray, quoteList, quoteTable } from '../db/sql';
import type { TableRegistry } from './table-registry';
import type { KeyRange, OpenKeyRange } from '../model/tables';

/** WHERE text selecting a key range (its upper end may be open), plus an optional row predicate. */
export function keyRangeWhere(shape: TableShape, range: OpenKeyRange, predicate?: string): string {
  const key = `(${quoteList(shape.primaryKey)})`;
  const conditions: string[] = [];
  if (range.lower !== null) conditions.push(`${key} > ${keyLiteral(range.lower, shape.primaryKeyTypes)}`);
  if (range.upper !== null) conditions.push(`${key} <= ${keyLiteral(range.upper, shape.primaryKeyTypes)}`);
  if (predicate !== undefined) conditions.push(`(${predicate})`);
  return conditions.length === 0 ? 'true' : conditions.join(' AND ');
}

export interface PartitionPlan {
  /** Partitions in key order; empty when the table has no rows. */
  partitions: KeyRange[];
  /** The largest key when planning: rows written above it later reach new through change capture. */
  maxKey: string[] | null;
}

/** Sampled pages per partition: enough for even partitions, few enough for a billion-row table. */
const SAMPLE_PAGES_PER_PARTITION = 32;
/** Below this many pages a partition is not worth a workflow of its own (~32 pages: about a chunk of 200-byte rows). */
const PAGES_PER_PARTITION_AT_LEAST = 32;

export function createKeyRanges(pools: ConnectionPools, registry: TableRegistry) {
  return {
    /**
     * Splits the table's keys into at most `partitions` ranges of similar row counts, from a
     * TABLESAMPLE of its pages. Plan after change capture is installed: every row above maxKey
     * (or anywhere, later) is then in the change log.
     */
    planPartitions: async (input: {
      migration: string;
      servers: ServerBinding;
      connection: ConnectionName;
      table: TableRef;
      partitions: number;
      chunkSize: number;
    }): Promise<PartitionPlan> => {
      const shape = await registry.shape(input.connection, input.migration, input.table);
      const pool = pools.get(input.connection);
      const table = quoteTable(input.table);
      const keyOrder = quoteList(shape.primaryKey);
      const max = await pool.query<{ key: string[] }>(
        `SELECT ${keyTextArray(shape.primaryKey)} AS key FROM ${table}
          ORDER BY ${shape.primaryKey.map((column) => `${quoteList([column])} DESC`).join(', ')} LIMIT 1`,
      );
      const maxKey = max.rows[0]?.key ?? null;
      if (maxKey === null) return { partitions: [], maxKey };
      const pages = await pool.query<{ pages: string }>(
        `SELECT greatest(pg_relation_size($1::regclass) / current_setting('block_size')::bigint, 1) AS pages`,
        [table],
      );
      const totalPages = Number(pages.rows[0]?.pages ?? 1);
      // A table of a few chunks is one partition: splitting it only adds workflows.
      const wanted = Math.min(
        input.partitions,
        Math.max(1, Math.floor(totalPages / PAGES_PER_PARTITION_AT_LEAST)),
      );
      if (wanted <= 1) return { partitions: [{ lower: null, upper: maxKey }], maxKey };
      const percent = Math.min(100, (100 * SAMPLE_PAGES_PER_PARTITION * wanted) / totalPages);
      const sample = await pool.query<{ key: string[] }>(
        `SELECT ${keyTextArray(shape.primaryKey)} AS key FROM ${table} TABLESAMPLE SYSTEM ($1) ORDER BY ${keyOrder}`,
        [percent],
      );
      const boundaries: string[][] = [];
      for (let i = 1; i < wanted; i++) {
        const key = sample.rows[Math.floor((i * sample.rows.length) / wanted)]?.key;
        const previous = boundaries[boundaries.length - 1];
        if (key !== undefined && JSON.stringify(key) !== JSON.stringify(previous)) boundaries.push(key);
      }
      const uppers = [...boundaries.filter((key) => JSON.stringify(key) !== JSON.stringify(maxKey)), maxKey];
      return {
        partitions: uppers.map((upper, i) => ({ lower: i === 0 ? null : (uppers[i - 1] ?? null), upper })),
        maxKey,
      };
    },

    /**
     * The upper keys of the next `count` chunks of `chunkSize` rows after `range.lower`, within the
     * range (and matching the predicate, if any), read from the primary key index. Fewer than
     * `count` keys means the range ends within the next chunk.
     */
    findChunkBounds: async (input: {
      migration: string;
      servers: ServerBinding;
      connection: ConnectionName;
      table: TableRef;
      range: KeyRange;
      chunkSize: number;
      count: number;
      predicate?: string;
    }): Promise<string[][]> => {
      const shape = await registry.shape(input.connection, input.migration, input.table);
      const keyOrder = quoteList(shape.primaryKey);
      const within = keyRangeWhere(shape, input.range, input.predicate);
      const next = (after: string) =>
        `SELECT ${keyOrder} FROM ${quoteTable(input.table)}
          WHERE ${after}${within} ORDER BY ${keyOrder} OFFSET $1 - 1 LIMIT 1`;
      // Each bound is found from the one before, by skipping `chunkSize` - 1 keys in the primary key
      // index: the walk passes every key of `count` chunks on the application's database, so it does
      // nothing else per key (numbering each key to pick every chunkSize-th cost old about three
      // times as much CPU). Only the bounds' keys are turned into text.
      const found = await pools.get(input.connection).query<{ key: string[] }>(
        `WITH RECURSIVE live_migrate_bound (live_migrate_n, ${keyOrder}) AS (
           SELECT 1, * FROM (${next('')}) AS first_bound
           UNION ALL
           SELECT live_migrate_bound.live_migrate_n + 1, next_bound.*
             FROM live_migrate_bound,
                  LATERAL (${next(`(${keyOrder}) > (${shape.primaryKey.map((column) => `live_migrate_bound.${quoteList([column])}`).join(', ')}) AND `)}) AS next_bound
            WHERE live_migrate_bound.live_migrate_n < $2
         )
         SELECT ${keyTextArray(shape.primaryKey, 'live_migrate_bound')} AS key
           FROM live_migrate_bound ORDER BY live_migrate_n`,
        [input.chunkSize, input.count],
      );
      Context.current().heartbeat();
      return found.rows.map((row) => row.key);
    },
  };
}
