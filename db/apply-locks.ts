// Who may write a migrated table on the side being filled, and when. Backfill chunks insert under a
// shared lock and only where no row and no tombstone exists; the syncer re-reads keys from the
// authoritative side and applies them under an exclusive lock. So a chunk read before a delete can
// never land after the syncer applied that delete (hazard 2), two syncs of one key cannot cross
// (the later read is applied later), and a chunk never overwrites a newer row (hazard 1).
// A router's mirror of a write that only inserts or updates (no key gone) takes the shared lock plus
// an exclusive lock per key: two mirrors of one key still cannot cross (hazard 3), mirrors of
// different keys run side by side, and a chunk that races the mirror either finds the row there or
// fails on it; it never overwrites it. A mirror that must delete takes the exclusive lock.
// Transaction-scoped advisory locks: released by COMMIT or ROLLBACK, and by a dying session.
import type pg from 'pg';
import { HELPER_SCHEMA } from './helper-schema';
import type { TableRef } from '../model/tables';
import { quoteLiteral } from './sql';

function tableLockKeys(table: TableRef): string {
  return `hashtext('${HELPER_SCHEMA}'), hashtext(${quoteLiteral(`${table.schema}.${table.table}`)})`;
}

/** SQL that takes a chunk's lock, inside its transaction on the target, before its rows go in. */
export function chunkLockSql(table: TableRef): string {
  return `SELECT pg_advisory_xact_lock_shared(${tableLockKeys(table)})`;
}

/** Inside a chunk's transaction on the target, before its rows go in. */
export async function lockForChunkInsert(client: pg.ClientBase, table: TableRef): Promise<void> {
  await client.query(chunkLockSql(table));
}

/** SQL that takes the sync lock, inside a sync's transaction on the target, before the source is read. */
export function syncLockSql(table: TableRef): string {
  return `SELECT pg_advisory_xact_lock(${tableLockKeys(table)})`;
}

/**
 * SQL that takes a mirror's locks: the table's shared lock, then one exclusive lock per key, in one
 * order (so two mirrors of overlapping keys cannot deadlock). Keys as text, one value per key column.
 */
export function mirrorLocksSql(table: TableRef, keys: readonly string[][]): string {
  const names = keys.map((key) => quoteLiteral(JSON.stringify([table.schema, table.table, key])));
  return `SELECT pg_advisory_xact_lock_shared(${tableLockKeys(table)});
          SELECT pg_advisory_xact_lock(h) FROM (
            SELECT DISTINCT hashtextextended(name, 0) AS h FROM unnest(ARRAY[${names.join(', ')}]::text[]) AS name
            ORDER BY 1) AS ordered`;
}
