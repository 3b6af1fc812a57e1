// Verification: proves new equals old, a key range at a time, without moving rows between servers.
// Each chunk (the next `chunkSize` keys of the authoritative side) gets a count and an
// order-independent checksum (the sum of a 64-bit hash of every row's text) computed on both servers
// at once. Only a chunk whose checksums differ is compared row by row (key and row hash). A key that
// differs may be a write in flight: committed on the authoritative side, its sync not applied yet.
// Every such write has an entry in the change log (capture writes it in the writer's transaction),
// so after a settle delay a key still differing is looked up there: a key with a pending change is
// in flight, and is compared again once reconciliation has carried it (waiting at most
// `inFlightWaitMs`); a key that differs with nothing pending is a difference, whatever its history
// (a row changed only on the other side, a deleted table's rows, a write capture never saw). Those
// are reported and, unless told otherwise, repaired through the syncer from the authoritative side.
// Rows are read as text in the migration's session settings (UTC, ISO, exact floats), so the same row
// gives the same text on both servers whatever their major versions.
import { setTimeout as sleep } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import type pg from 'pg';
import type { ConnectionName } from '../model/connections';
import { HELPER_SCHEMA } from '../db/helper-schema';
import type { TableRef, TableShape } from '../model/tables';
import type { NamedPools } from '../db/pools';
import { keyRangeWhere } from './key-ranges';
import type { OpenKeyRange } from '../model/tables';
import type { ServerBinding } from '../model/servers';
import { keyLiteral, keyTextArray, quoteList, quoteTable } from '../db/sql';
import type { SyncKeysInput, SyncKeysResult } from '../db/sync';
import type { TableRegistry } from './table-registry';
import { addSampleKeys, noCounts, type VerificationCounts } from '../model/verification-counts';

export interface VerifyRangeInput {
  migration: string;
  servers: ServerBinding;
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
  /** How long keys with a pending change may take to be carried over before the check ends, in ms. */
  inFlightWaitMs?: number;
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

function keyLiterals(shape: TableShape, keys: Iterable<string>): string {
  return [...keys].map((key) => keyLiteral(JSON.parse(key) as string[], shape.primaryKeyTypes)).join(', ');
}

function keysWhere(shape: TableShape, keys: Iterable<string>): string {
  return `(${quoteList(shape.primaryKey)}) IN (${keyLiterals(shape, keys)})`;
}

/**
 * Of `keys` (JSON of their text values), those with a change pending in the migration's change log
 * on the authoritative side (only changes up to entry `upTo`, when given), and the last such entry.
 * Log keys are jsonb; cast through the key's types, they compare with (and are given back in) the
 * same text form as the verifier's keys.
 */
async function pendingKeys(
  pool: pg.Pool,
  migration: string,
  shape: TableShape,
  keys: Set<string>,
  upTo: string | null = null,
): Promise<{ keys: Set<string>; last: string | null }> {
  if (keys.size === 0) return { keys: new Set(), last: null };
  const logged = shape.primaryKeyTypes.map((type, i) => `(c.key->>${i})::${type}`);
  const { rows } = await pool.query<{ key: string[]; last: string }>(
    `SELECT ARRAY[${logged.map((value) => `${value}::text`).join(', ')}] AS key, max(c.id)::text AS last
       FROM ${HELPER_SCHEMA}.change_log c
      WHERE c.migration = $1 AND c.table_schema = $2 AND c.table_name = $3
        AND ($4::bigint IS NULL OR c.id <= $4::bigint)
        AND (${logged.join(', ')}) IN (${keyLiterals(shape, keys)})
      GROUP BY 1`,
    [migration, shape.table.schema, shape.table.table, upTo],
  );
  const last = rows.reduce<bigint | null>(
    (max, row) => (max === null || BigInt(row.last) > max ? BigInt(row.last) : max),
    null,
  );
  return {
    keys: new Set(rows.map((row) => JSON.stringify(row.key))),
    last: last === null ? null : String(last),
  };
}

/** For tests: runs when a chunk's differing keys are known, before the settle delay. */
export interface VerifierHooks {
  beforeSettle?: (input: VerifyRangeInput, keys: string[][]) => Promise<void>;
}

/** How often a check waiting for in-flight keys looks at the change log again. */
const IN_FLIGHT_POLL_MS = 500;
export const DEFAULT_IN_FLIGHT_WAIT_MS = 60_000;

export function createRangeVerifier(
  pools: NamedPools,
  registry: TableRegistry,
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

  /**
   * Compares differing keys again, after their pending changes (if any) were carried over: those that
   * agree now settled; those that differ with a change still pending are in flight; the rest differ.
   */
  async function recheck(
    shape: TableShape,
    input: VerifyRangeInput,
    keys: string[],
    beat: () => void,
  ): Promise<{ differing: string[]; settled: number; inFlight: number }> {
    const from = pools.get(input.from);
    // Wait for the changes pending now (not for later writes of a hot row, which keep coming) to be
    // carried over, at most inFlightWaitMs.
    const first = await pendingKeys(from, input.migration, shape, new Set(keys));
    let pending = first.keys;
    const deadline = Date.now() + (input.inFlightWaitMs ?? DEFAULT_IN_FLIGHT_WAIT_MS);
    while (pending.size > 0 && Date.now() < deadline) {
      beat();
      await sleep(IN_FLIGHT_POLL_MS);
      pending = (await pendingKeys(from, input.migration, shape, pending, first.last)).keys;
    }
    // One after the other: the authoritative side, its change log, the other side, the
    // authoritative side again. A write the other side lacks at its read committed before the first
    // read, and its change log entry lives until its sync (a mirror, reconciliation) has committed on
    // the other side, after that read: so the log, read in between, holds it. A write that committed
    // during the check changes the authoritative side between its two reads. Either is in flight;
    // a key that differs with neither is a difference. (Reading the log after both sides missed a
    // mirror that committed and removed its entries in between: a false difference on a hot row.)
    const where = keysWhere(shape, keys);
    const fromNow = await rowHashes(from, shape, where);
    const pendingAtRead = (await pendingKeys(from, input.migration, shape, new Set(keys))).keys;
    const toNow = await rowHashes(pools.get(input.to), shape, where);
    const fromAgain = await rowHashes(from, shape, where);
    const differing: string[] = [];
    let settled = 0;
    let inFlight = 0;
    for (const key of keys) {
      if (fromNow.get(key) === toNow.get(key)) settled += 1;
      else if (pendingAtRead.has(key) || fromAgain.get(key) !== fromNow.get(key)) inFlight += 1;
      else differing.push(key);
    }
    return { differing, settled, inFlight };
  }

  return {
    /**
     * Verifies up to `maxChunks` chunks of the range and returns where it got to. A retry resumes
     * after the last chunk it reported in a heartbeat.
     */
    verifyRange: async (input: VerifyRangeInput): Promise<VerifyRangeResult> => {
      const shape = await registry.forSync({
        migration: input.migration,
        from: input.from,
        to: input.to,
        table: input.table,
      });
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
          }
          if (keys.length > 0) {
            const checked = await recheck(shape, input, keys, () =>
              context.heartbeat({ reached: result.reached, result }),
            );
            result.settled += checked.settled;
            result.inFlight += checked.inFlight;
            keys = checked.differing;
          }
          result.differences += keys.length;
          addSampleKeys(
            result,
            keys.map((key) => JSON.parse(key) as string[]),
          );
          if (input.repair && keys.length > 0) {
            const synced = await syncKeys({
              migration: input.migration,
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
