// The migration's own tables, in one schema on each side: the change log that capture fills (on the
// side writers use), the chunk markers that make a copied chunk durable, the tombstones that stop a
// stale chunk from bringing back a deleted row (on the side being filled), and the stage store that
// routers follow. Created idempotently;
// removed only when the migration is retired, never with user data.
// Also the small function that tells a router which keys its own session wrote (`noteWrittenKey`).
import type pg from 'pg';
import { withTransaction } from './pools';

export const HELPER_SCHEMA = 'live_migrate';
/** A session with this setting 'on' has the keys it writes noted in WRITTEN_SETTING. */
export const COLLECT_SETTING = 'live_migrate.collect';
export const WRITTEN_SETTING = 'live_migrate.written';
/** The migration's own sessions say so ('migration'): the write guard lets only them write old. */
export const WRITER_SETTING = 'live_migrate.writer';
const WRITTEN_LIMIT = 8192;

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
  // Added after the first release of these tables: the write fence of the switch (stage-store.ts).
  `ALTER TABLE ${HELPER_SCHEMA}.stages ADD COLUMN IF NOT EXISTS fenced boolean NOT NULL DEFAULT false`,
  `ALTER TABLE ${HELPER_SCHEMA}.routers ADD COLUMN IF NOT EXISTS fence_acknowledged bigint`,
  // ... and the counters each router publishes for the read ramp's gates (router/gate-stats.ts).
  `ALTER TABLE ${HELPER_SCHEMA}.routers ADD COLUMN IF NOT EXISTS stats jsonb`,
  // Called by the capture trigger for a session that asked (a router's, with live_migrate.collect on):
  // appends [schema, table, key as text] to the session's live_migrate.written setting. A session
  // setting changed in a transaction that rolls back is restored, so the list holds committed writes
  // only. The router reads and clears it after each write and mirrors exactly those keys. Past
  // WRITTEN_LIMIT characters the list becomes '*' (too many to mirror one by one: the change log
  // drain brings them).
  `CREATE OR REPLACE FUNCTION ${HELPER_SCHEMA}.note_written(table_schema text, table_name text, key jsonb)
     RETURNS void LANGUAGE plpgsql AS $note$
     DECLARE
       written text := coalesce(current_setting('${WRITTEN_SETTING}', true), '');
     BEGIN
       IF written = '*' THEN RETURN; END IF;
       IF length(written) > ${WRITTEN_LIMIT} THEN
         written := '*';
       ELSE
         written := written || jsonb_build_array(table_schema, table_name,
           (SELECT jsonb_agg(part) FROM jsonb_array_elements_text(key) AS part))::text || E'\n';
       END IF;
       PERFORM set_config('${WRITTEN_SETTING}', written, false);
     END
     $note$`,
];

/** Creates the helper schema and tables when missing; safe to run from several workers at once. */
export async function ensureHelperSchema(pool: pg.Pool): Promise<void> {
  await withTransaction(pool, async (client) => {
    // Concurrent CREATE ... IF NOT EXISTS can still collide in the catalog; take turns.
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('${HELPER_SCHEMA}'), 0)`);
    for (const statement of HELPER_DDL) await client.query(statement);
  });
}
