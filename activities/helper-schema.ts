// The migration's own tables, in one schema on each side: the change log that capture fills (on the
// side writers use), the chunk markers that make a copied chunk durable, the tombstones that stop a
// stale chunk from bringing back a deleted row (on the side being filled), and the stage store that
// routers follow. Created idempotently;
// removed only when the migration is retired, never with user data.
import type pg from 'pg';
import { withTransaction } from './pools';

export const HELPER_SCHEMA = 'live_migrate';

const HELPER_DDL = [
  `CREATE SCHEMA IF NOT EXISTS ${HELPER_SCHEMA}`,
  // One row per changed key, written by the capture trigger in the writer's own transaction.
  `CREATE TABLE IF NOT EXISTS ${HELPER_SCHEMA}.change_log (
     id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
     table_schema text NOT NULL,
     table_name text NOT NULL,
     key jsonb NOT NULL,
     logged_at timestamptz NOT NULL DEFAULT clock_timestamp()
   )`,
  // A chunk is done when its marker exists; the marker commits with the chunk's rows.
  `CREATE TABLE IF NOT EXISTS ${HELPER_SCHEMA}.backfill_chunks (
     migration text NOT NULL,
     chunk_id text NOT NULL,
     table_schema text NOT NULL,
     table_name text NOT NULL,
     lower_key text[],
     upper_key text[] NOT NULL,
     rows_read integer NOT NULL,
     rows_copied integer NOT NULL,
     -- Which attempt of the chunk's activity committed it: attempts before it died or failed.
     attempt integer NOT NULL DEFAULT 1,
     copied_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (migration, chunk_id)
   )`,
  // A key the syncer found deleted at the authoritative side: the backfill must not copy it again.
  `CREATE TABLE IF NOT EXISTS ${HELPER_SCHEMA}.tombstones (
     table_schema text NOT NULL,
     table_name text NOT NULL,
     key text[] NOT NULL,
     deleted_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (table_schema, table_name, key)
   )`,
  // The migration's stage, which every router follows (router/stage-store.ts).
  `CREATE TABLE IF NOT EXISTS ${HELPER_SCHEMA}.stages (
     migration text PRIMARY KEY,
     stage text NOT NULL,
     read_percent integer NOT NULL DEFAULT 0 CHECK (read_percent BETWEEN 0 AND 100),
     version bigint NOT NULL,
     changed_at timestamptz NOT NULL DEFAULT now()
   )`,
  // Every live router, the stage version it has seen, and when it last said so.
  `CREATE TABLE IF NOT EXISTS ${HELPER_SCHEMA}.routers (
     router_id text PRIMARY KEY,
     migration text NOT NULL,
     stage text,
     version bigint,
     host text,
     pid integer,
     started_at timestamptz NOT NULL DEFAULT now(),
     heartbeat_at timestamptz NOT NULL DEFAULT now()
   )`,
];

/** Creates the helper schema and tables when missing; safe to run from several workers at once. */
export async function ensureHelperSchema(pool: pg.Pool): Promise<void> {
  await withTransaction(pool, async (client) => {
    // Concurrent CREATE ... IF NOT EXISTS can still collide in the catalog; take turns.
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('${HELPER_SCHEMA}'), 0)`);
    for (const statement of HELPER_DDL) await client.query(statement);
  });
}
