// Who may write a migrated table on the side being filled, and when. Backfill chunks insert under a
// shared lock and only where no row and no tombstone exists; the syncer re-reads keys from the
// authoritative side and applies them under an exclusive lock. So a chunk read before a delete can
// never land after the syncer applied that delete (hazard 2), two syncs of one key cannot cross
// (the later read is applied later), and a chunk never overwrites a newer row (hazard 1).
// Transaction-scoped advisory locks: released by COMMIT or ROLLBACK, and by a dying session.
import type pg from 'pg';
import { HELPER_SCHEMA } from './helper-schema';
import type { TableRef } from './inspector';

const LOCK_KEYS = `hashtext('${HELPER_SCHEMA}'), hashtext($1)`;

function lockName(table: TableRef): string {
  return `${table.schema}.${table.table}`;
}

/** Inside a chunk's transaction on the target, before its rows go in. */
export async function lockForChunkInsert(client: pg.ClientBase, table: TableRef): Promise<void> {
  await client.query(`SELECT pg_advisory_xact_lock_shared(${LOCK_KEYS})`, [lockName(table)]);
}

/** Inside a sync's transaction on the target, before the authoritative side is read. */
export async function lockForSync(client: pg.ClientBase, table: TableRef): Promise<void> {
  await client.query(`SELECT pg_advisory_xact_lock(${LOCK_KEYS})`, [lockName(table)]);
}
