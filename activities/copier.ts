// Copier: copies one chunk (a fixed key range) from the source to the target, in one transaction
// on the target that also records the chunk as done. When the target holds nothing in the range,
// the rows stream as binary COPY straight into the table; otherwise into a staging table, from which
// only the rows the target does not have yet are inserted (a row already there came from a newer
// write and wins; a tombstoned key was deleted after this chunk was read and stays deleted). A
// retried or duplicated attempt finds the marker and changes nothing.
// Round trips are what a chunk of 1000 rows costs beyond its rows, so the common case takes three
// on the target: one opens the transaction, looks for the marker, takes the lock, checks that the
// range is clear and that the table's definition is still the claimed one; one streams the rows;
// one inserts the marker and commits.
import { createHash } from 'node:crypto';
import { Context, log } from '@temporalio/activity';
import type pg from 'pg';
import type { ConnectionName } from '../model/connections';
import { chunkLockSql, lockForChunkInsert } from '../db/apply-locks';
import { HELPER_SCHEMA } from '../db/helper-schema';
import type { TableRef, TableShape } from '../model/tables';
import { keyRangeWhere } from './key-ranges';
import type { KeyRange } from '../model/tables';
import { withSession, type ConnectionPools } from '../db/pools';
import { keyLiteral, keyTextArray, quoteList, quoteLiteral, quoteTable } from '../db/sql';
import { copyRowsAcross, ensureStaging } from '../db/staging';
import { asActivityFailure, isTransient, sqlState } from './failures';
import type { ServerBinding } from '../model/servers';
import { claimLookSqlFor, type ClaimLook, type TableRegistry } from './table-registry';
import type { SourceHealth, SourceLook, SourceLooks } from './throttler';

export interface CopyChunkInput {
  migration: string;
  servers: ServerBinding;
  source: ConnectionName;
  target: ConnectionName;
  table: TableRef;
  range: KeyRange;
  /** Only rows matching this condition (the hot-rows pass); the main pass copies every row. */
  predicate?: string;
}

/** Consecutive chunks for one activity: each still its own transaction with its own marker. */
export interface CopyChunksInput extends Omit<CopyChunkInput, 'range'> {
  ranges: KeyRange[];
  /**
   * Look at the source's health first, against these limits (a look of this worker younger than
   * `maxAgeMs` serves): when one is crossed, copy nothing and say why (`source`). Spares the backfill
   * an activity of its own for the look before a batch.
   */
  lookAtSource?: SourceLook;
}

export interface CopyChunksResult {
  rowsRead: number;
  rowsCopied: number;
  chunks: number;
  /** Chunks an earlier attempt had already committed (skipped). */
  chunksAlreadyDone: number;
  /** The source's health, when the input asked to look at it; with a reason, nothing was copied. */
  source?: SourceHealth;
}

export interface CopyChunkResult {
  rowsRead: number;
  rowsCopied: number;
  /** An earlier attempt already committed this chunk; nothing was copied this time. */
  alreadyDone: boolean;
}

/** Test seams: let a test act between the read and the write of a chunk (hazards 1 and 2), or watch. */
export interface CopierHooks {
  /** Fast path only, after the range was found clear and before the rows stream in. */
  afterRangeChecked?: (chunk: CopyChunkInput) => Promise<void>;
  /** Slow path only, after the rows are staged and before they are inserted. */
  afterChunkStaged?: (chunk: CopyChunkInput) => Promise<void>;
  /** After a chunk committed (either path). */
  afterChunkCommitted?: (chunk: CopyChunkInput, result: CopyChunkResult) => void;
}

const UNIQUE_VIOLATION = '23505';
/**
 * How often copyChunks reports its progress (chunks done) as heartbeat details, from its start.
 * Liveness needs no heartbeat of its own here (withHeartbeats beats for every activity), and each
 * one is a synchronous call into the SDK's native core, and the first one a call to the Temporal
 * server: one a second is plenty for a progress figure, and none for a batch shorter than that.
 */
const PROGRESS_BEAT_MS = 1000;

function chunkId(input: CopyChunkInput): string {
  return createHash('sha256')
    .update(JSON.stringify([input.table.schema, input.table.table, input.predicate ?? null, input.range]))
    .digest('hex');
}

interface MarkerRow {
  rows_read: number;
  rows_copied: number;
}

function markerResult(row: MarkerRow | undefined): CopyChunkResult | undefined {
  return row && { rowsRead: row.rows_read, rowsCopied: row.rows_copied, alreadyDone: true };
}

async function findMarker(
  client: pg.ClientBase,
  migration: string,
  id: string,
): Promise<CopyChunkResult | undefined> {
  const found = await client.query<MarkerRow>(
    `SELECT rows_read, rows_copied FROM ${HELPER_SCHEMA}.backfill_chunks WHERE migration = $1 AND chunk_id = $2`,
    [migration, id],
  );
  return markerResult(found.rows[0]);
}

function insertMissingRowsSql(shape: TableShape, staging: string): string {
  const columns = quoteList(shape.copyColumns);
  return `INSERT INTO ${quoteTable(shape.table)} (${columns})
          ${shape.alwaysIdentity.length > 0 ? 'OVERRIDING SYSTEM VALUE' : ''}
          SELECT ${columns} FROM ${staging} AS s
           WHERE NOT EXISTS (
             SELECT 1 FROM ${HELPER_SCHEMA}.tombstones AS t
              WHERE t.table_schema = $1 AND t.table_name = $2 AND t.key = ${keyTextArray(shape.primaryKey, 's')})
          ON CONFLICT (${quoteList(shape.primaryKey)}) DO NOTHING`;
}

/** True when the target holds neither a row nor a tombstone in the chunk's key range. */
function rangeIsClearSql(shape: TableShape, range: KeyRange, table: TableRef): string {
  const tombstoneKey = `(${shape.primaryKeyTypes.map((type, i) => `tb.key[${i + 1}]::${type}`).join(', ')})`;
  const tombstoneRange = [`${tombstoneKey} <= ${keyLiteral(range.upper, shape.primaryKeyTypes)}`];
  if (range.lower !== null) {
    tombstoneRange.push(`${tombstoneKey} > ${keyLiteral(range.lower, shape.primaryKeyTypes)}`);
  }
  return `SELECT NOT EXISTS (SELECT 1 FROM ${quoteTable(shape.table)} WHERE ${keyRangeWhere(shape, range)})
             AND NOT EXISTS (SELECT 1 FROM ${HELPER_SCHEMA}.tombstones AS tb
                              WHERE tb.table_schema = ${quoteLiteral(table.schema)} AND tb.table_name = ${quoteLiteral(table.table)}
                                AND ${tombstoneRange.join(' AND ')}) AS clear`;
}

/**
 * A chunk's first round trip on the target, in this order: BEGIN; its marker; the shared lock; is
 * the range clear; a quick claim look (the definition unchanged). The range check holds the table's
 * ACCESS SHARE lock until the chunk commits, so no DDL on the table lands between that look and the
 * commit. Literals, not parameters: several statements go in one simple query.
 */
function openChunkSql(shape: TableShape, input: CopyChunkInput, id: string): string {
  return [
    'BEGIN',
    `SELECT rows_read, rows_copied FROM ${HELPER_SCHEMA}.backfill_chunks
      WHERE migration = ${quoteLiteral(input.migration)} AND chunk_id = ${quoteLiteral(id)}`,
    chunkLockSql(input.table),
    rangeIsClearSql(shape, input.range, input.table),
    claimLookSqlFor(input.table, true),
  ].join(';\n');
}

function textArrayLiteral(key: readonly string[] | null): string {
  return key === null ? 'NULL' : `ARRAY[${key.map(quoteLiteral).join(', ')}]::text[]`;
}

/**
 * The chunk's marker and the COMMIT in one round trip. No ON CONFLICT: when another attempt of the
 * chunk committed first, the INSERT fails, the COMMIT after it never runs, and this attempt's rows go.
 */
function markAndCommitSql(input: CopyChunkInput, id: string, rowsRead: number, rowsCopied: number): string {
  const values = [
    quoteLiteral(input.migration),
    quoteLiteral(id),
    quoteLiteral(input.table.schema),
    quoteLiteral(input.table.table),
    textArrayLiteral(input.range.lower),
    textArrayLiteral(input.range.upper),
    String(rowsRead),
    String(rowsCopied),
    String(Context.current().info.attempt),
  ];
  return `INSERT INTO ${HELPER_SCHEMA}.backfill_chunks
            (migration, chunk_id, table_schema, table_name, lower_key, upper_key, rows_read, rows_copied, attempt)
          VALUES (${values.join(', ')});
          COMMIT`;
}

/** The unique violation of a chunk's marker: another attempt of the chunk committed it. */
function isMarkerConflict(err: unknown): boolean {
  return sqlState(err) === UNIQUE_VIOLATION && (err as { table?: unknown }).table === 'backfill_chunks';
}

export function createCopier(
  pools: ConnectionPools,
  registry: TableRegistry,
  looks: SourceLooks,
  hooks: CopierHooks = {},
) {
  /** An earlier attempt committed the chunk: ends the transaction that found its marker, changing nothing. */
  async function alreadyDone(target: pg.ClientBase, id: string, done: CopyChunkResult) {
    await target.query('COMMIT');
    log.debug('chunk already done', { chunk: id, rowsRead: done.rowsRead });
    return done;
  }

  /** Opens the chunk's transaction; returns the chunk's result when an earlier attempt committed it. */
  async function begin(target: pg.ClientBase, input: CopyChunkInput, id: string) {
    await target.query('BEGIN');
    const done = await findMarker(target, input.migration, id);
    return done === undefined ? undefined : alreadyDone(target, id, done);
  }

  /** Records the chunk as done and commits it with its rows, unless another attempt got there first. */
  async function markAndCommit(
    target: pg.ClientBase,
    input: CopyChunkInput,
    id: string,
    rowsRead: number,
    rowsCopied: number,
  ): Promise<CopyChunkResult> {
    try {
      await target.query(markAndCommitSql(input, id, rowsRead, rowsCopied));
    } catch (err) {
      if (!isMarkerConflict(err)) throw err;
      // A concurrent attempt of this chunk committed first: its rows stand, this one's go.
      await target.query('ROLLBACK');
      return (
        (await findMarker(target, input.migration, id)) ?? { rowsRead, rowsCopied: 0, alreadyDone: true }
      );
    }
    log.debug('chunk copied', { chunk: id, rowsRead, rowsCopied });
    const result = { rowsRead, rowsCopied, alreadyDone: false };
    hooks.afterChunkCommitted?.(input, result);
    return result;
  }

  /**
   * Copies one chunk. A failure that retrying cannot heal leaves non-retryable, naming the table
   * (and, when a schema change on either side caused it, as that schema change).
   */
  async function copyChunk(input: CopyChunkInput): Promise<CopyChunkResult> {
    const sides = { migration: input.migration, from: input.source, to: input.target, table: input.table };
    // The target's definition is checked inside the chunk's transaction (openChunkSql).
    const shape = await registry.shape(input.source, input.migration, input.table);
    try {
      return await copyChunkOfShape(input, shape);
    } catch (err) {
      if (isTransient(err)) throw err;
      await registry.forSync(sides);
      throw asActivityFailure(err, input.table, input.target, input.range);
    }
  }

  async function copyChunkOfShape(input: CopyChunkInput, shape: TableShape): Promise<CopyChunkResult> {
    const id = chunkId(input);
    const source = pools.get(input.source);
    const selectSql = `SELECT ${quoteList(shape.copyColumns)} FROM ${quoteTable(input.table)}
                          WHERE ${keyRangeWhere(shape, input.range, input.predicate)}`;
    const tableParams = [input.table.schema, input.table.table];
    return withSession(pools.get(input.target), async (target) => {
      // A failure here leaves the session to withSession, which discards it, transaction and all.
      const opened = (await target.query(openChunkSql(shape, input, id))) as unknown as pg.QueryResult[];
      const [, marker, , clear, look] = opened;
      const lookAgain = async () => {
        const again = await target.query<ClaimLook>(claimLookSqlFor(input.table));
        return again.rows[0]!;
      };
      await registry.shapeFromLook(
        input.target,
        input.migration,
        input.table,
        look!.rows[0] as ClaimLook,
        lookAgain,
      );
      const done = markerResult(marker!.rows[0] as MarkerRow | undefined);
      if (done !== undefined) return alreadyDone(target, id, done);

      // Fast path: under the lock no sync can touch the table; when the range holds no row and
      // no tombstone, the rows stream straight into the table (the common case of a first copy).
      if ((clear!.rows[0] as { clear: boolean } | undefined)?.clear === true) {
        try {
          await hooks.afterRangeChecked?.(input);
          const rows = await copyRowsAcross(source, target, quoteTable(input.table), shape, selectSql);
          return await markAndCommit(target, input, id, rows, rows);
        } catch (err) {
          // A router's mirror wrote a key of this range after the check (mirrors of single keys take
          // the shared lock too): its row is newer and stays; the chunk goes the slow way instead.
          if (sqlState(err) !== UNIQUE_VIOLATION) throw err;
          log.debug('chunk met a mirrored row on the fast path; staging it instead', { chunk: id });
        }
      }
      // Slow path: something already wrote in this range. Stage the rows without holding the lock,
      // then insert only the keys the target has neither as a row nor as a tombstone.
      await target.query('ROLLBACK');
      const staging = await ensureStaging(target, shape);
      const doneMeanwhile = await begin(target, input, id);
      if (doneMeanwhile !== undefined) return doneMeanwhile;
      const rowsRead = await copyRowsAcross(source, target, staging, shape, selectSql);
      log.debug('chunk staged', { chunk: id, rowsRead });
      await hooks.afterChunkStaged?.(input);
      await lockForChunkInsert(target, input.table);
      const inserted = await target.query(insertMissingRowsSql(shape, staging), tableParams);
      return await markAndCommit(target, input, id, rowsRead, inserted.rowCount ?? 0);
    });
  }

  return {
    copyChunk,

    /**
     * Copies consecutive chunks one after the other, each committed with its marker before the next
     * starts, reporting the chunks done as heartbeat details: one activity for a few chunks costs
     * Temporal a fraction of one activity per chunk, while every chunk stays a durable checkpoint. A
     * retry skips the committed ones. Asked to, it first looks at the source's health, and copies
     * nothing while the source is hurting.
     */
    copyChunks: async (input: CopyChunksInput): Promise<CopyChunksResult> => {
      const total: CopyChunksResult = { rowsRead: 0, rowsCopied: 0, chunks: 0, chunksAlreadyDone: 0 };
      const { ranges, lookAtSource, ...chunk } = input;
      if (lookAtSource !== undefined) {
        total.source = await looks(input.source, lookAtSource);
        if (total.source.reason !== null) return total;
      }
      // The first progress beat a second in: a batch done sooner costs Temporal no heartbeat call.
      let reportedAt = Date.now();
      for (const range of ranges) {
        const result = await copyChunk({ ...chunk, range });
        total.rowsRead += result.rowsRead;
        total.rowsCopied += result.rowsCopied;
        total.chunks += 1;
        if (result.alreadyDone) total.chunksAlreadyDone += 1;
        if (Date.now() - reportedAt >= PROGRESS_BEAT_MS) {
          reportedAt = Date.now();
          Context.current().heartbeat(total.chunks);
        }
      }
      return total;
    },
  };
}
