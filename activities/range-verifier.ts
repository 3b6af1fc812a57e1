// Verification: proves new equals old, a key range at a time, without moving rows between servers.
// Each chunk (the next `chunkSize` keys of the authoritative side) gets a count and an
// order-independent checksum (the sum of a 64-bit hash of every row's text) computed on both servers
// at once. Only a chunk whose checksums differ is compared row by row (key and row hash). Keys that
// differ may be writes in flight: after a settle delay they are compared again, and only keys whose
// row the authoritative side left alone meanwhile and that still differ are reported, and repaired
// through the syncer from the authoritative side. (A row written meanwhile is in flight: each write
// syncs the whole row, so it is not a finding; a hot row is never held against the migration.)
// Rows are read as text in the migration's session settings (UTC, ISO, exact floats), so the same row
// gives the same text on both servers whatever their major versions.
import { setTimeout as sleep } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import type pg from 'pg';
import type { ConnectionName } from '../config/connections';
import type { TableRef, TableShape } from './inspector';
import type { NamedPools } from './pools';
import { keyRangeWhere, type OpenKeyRange } from './key-ranges';
import { keyLiteral, keyTextArray, quoteList, quoteTable } from './sql';
import type { SyncKeysInput, SyncKeysResult } from './syncer';
import { addSampleKeys, noCounts, type VerificationCounts } from './verification-counts';
import type { TableShapes } from './table-shapes';

export interface VerifyRangeInput {
  /** The authoritative side: its keys set the chunks, its rows are the truth for repairs. */
  from: ConnectionName;
  to: ConnectionName;
  table: TableRef;
  range: OpenKeyRange;
  chunkSize: number;
  /** Chunks this activity verifies at most before it returns (the workflow then continues). */
  maxChunks: number;
  /** How long to wait before comparing differing keys again, in ms. */
  settleMs: number;
  /** Sync the keys that still differ after the settle delay. */
  repair: boolean;
}

export interface VerifyRangeResult extends VerificationCounts {
  /** The last key verified (the range continues after it), or null when nothing was verified. */
  reached: string[] | null;
  done: boolean;
}

function rowText(shape: TableShape): string {
  return `ROW(${quoteList(shape.copyColumns)})::text`;
}

async function checksum(
  pool: pg.Pool,
  shape: TableShape,
  where: string,
): Promise<{ rows: number; sum: string }> {
  const { rows } = await pool.query<{ rows: string; sum: string }>(
    `SELECT count(*) AS rows, coalesce(sum(hashtextextended(${rowText(shape)}, 0)::numeric), 0)::text AS sum
       FROM ${quoteTable(shape.table)} WHERE ${where}`,
  );
  return { rows: Number(rows[0]?.rows ?? 0), sum: rows[0]?.sum ?? '0' };
}

/** Row hashes by key (JSON of the key's text values). */
async function rowHashes(pool: pg.Pool, shape: TableShape, where: string): Promise<Map<string, string>> {
  const { rows } = await pool.query<{ key: string[]; hash: string }>(
    `SELECT ${keyTextArray(shape.primaryKey)} AS key, md5(${rowText(shape)}) AS hash
       FROM ${quoteTable(shape.table)} WHERE ${where}`,
  );
  return new Map(rows.map((row) => [JSON.stringify(row.key), row.hash]));
}

function differingKeys(a: Map<string, string>, b: Map<string, string>): string[] {
  const keys = new Set<string>();
  for (const [key, hash] of a) if (b.get(key) !== hash) keys.add(key);
  for (const key of b.keys()) if (!a.has(key)) keys.add(key);
  return [...keys];
}

function keysWhere(shape: TableShape, keys: string[]): string {
  const literals = keys.map((key) => keyLiteral(JSON.parse(key) as string[], shape.primaryKeyTypes));
  return `(${quoteList(shape.primaryKey)}) IN (${literals.join(', ')})`;
}

/** For tests: runs when a chunk's differing keys are known, before the settle delay. */
export interface VerifierHooks {
  beforeSettle?: (input: VerifyRangeInput, keys: string[][]) => Promise<void>;
}

export function createRangeVerifier(
  pools: NamedPools,
  shapes: TableShapes,
  syncKeys: (input: SyncKeysInput) => Promise<SyncKeysResult>,
  hooks: VerifierHooks = {},
) {
  /** The upper key of the next chunk after `lower` within the range, or the range's end. */
  async function nextChunkUpper(shape: TableShape, input: VerifyRangeInput, lower: string[] | null) {
    const keyOrder = quoteList(shape.primaryKey);
    const { rows } = await pools.get(input.from).query<{ key: string[]; n: string }>(
      `SELECT key, n FROM (
         SELECT ${keyTextArray(shape.primaryKey)} AS key, row_number() OVER (ORDER BY ${keyOrder}) AS n
           FROM (SELECT ${keyOrder} FROM ${quoteTable(input.table)}
                  WHERE ${keyRangeWhere(shape, { lower, upper: input.range.upper })}
                  ORDER BY ${keyOrder} LIMIT $1) AS walked) AS numbered
        ORDER BY n DESC LIMIT 1`,
      [input.chunkSize],
    );
    const last = rows[0];
    // A full chunk ends at its last key; a short one is the rest of the range.
    return last !== undefined && Number(last.n) === input.chunkSize
      ? { upper: last.key, last: false }
      : { upper: input.range.upper, last: true };
  }

  return {
    /**
     * Verifies up to `maxChunks` chunks of the range and returns where it got to. A retry resumes
     * after the last chunk it reported in a heartbeat.
     */
    verifyRange: async (input: VerifyRangeInput): Promise<VerifyRangeResult> => {
      const shape = await shapes.get(input.from, input.table);
      const context = Context.current();
      const resumed = context.info.heartbeatDetails as
        { reached: string[] | null; result: VerifyRangeResult } | undefined;
      const result: VerifyRangeResult = resumed?.result ?? {
        reached: input.range.lower,
        done: false,
        ...noCounts(),
      };
      const from = pools.get(input.from);
      const to = pools.get(input.to);
      while (!result.done && result.chunks < input.maxChunks) {
        const chunk = await nextChunkUpper(shape, input, result.reached);
        const where = keyRangeWhere(shape, { lower: result.reached, upper: chunk.upper });
        const [a, b] = await Promise.all([checksum(from, shape, where), checksum(to, shape, where)]);
        result.rowsFrom += a.rows;
        result.rowsTo += b.rows;
        result.chunks += 1;
        if (a.rows !== b.rows || a.sum !== b.sum) {
          result.mismatchedChunks += 1;
          const [rowsA, rowsB] = await Promise.all([
            rowHashes(from, shape, where),
            rowHashes(to, shape, where),
          ]);
          let keys = differingKeys(rowsA, rowsB);
          if (keys.length > 0 && input.settleMs > 0) {
            // A write in flight (committed on one side, its sync not yet applied) settles; a real
            // difference stays.
            context.heartbeat({ reached: result.reached, result });
            await hooks.beforeSettle?.(
              input,
              keys.map((key) => JSON.parse(key) as string[]),
            );
            await sleep(input.settleMs);
            // Still a difference: the authoritative side did not change the row since it was found
            // (a row written since is in flight, and its write syncs it whole), and the other side
            // still disagrees with it.
            const again = keysWhere(shape, keys);
            const fromNow = await rowHashes(from, shape, again);
            const toNow = await rowHashes(to, shape, again);
            const still = new Set(
              keys.filter(
                (key) => fromNow.get(key) === rowsA.get(key) && toNow.get(key) !== fromNow.get(key),
              ),
            );
            result.settled += keys.filter((key) => !still.has(key)).length;
            keys = keys.filter((key) => still.has(key));
          }
          result.differences += keys.length;
          addSampleKeys(
            result,
            keys.map((key) => JSON.parse(key) as string[]),
          );
          if (input.repair && keys.length > 0) {
            const synced = await syncKeys({
              from: input.from,
              to: input.to,
              table: input.table,
              keys: keys.map((key) => JSON.parse(key) as string[]),
            });
            result.repaired += synced.keys;
          }
        }
        result.reached = chunk.upper;
        result.done = chunk.last;
        context.heartbeat({ reached: result.reached, result });
      }
      return result;
    },
  };
}
