// The migration's own tables, in one schema on each side: the change log that capture fills (on the
// side writers use), the chunk markers that make a copied chunk durable, the tombstones that stop a
// stale chunk from bringing back a deleted row (on the side being filled), the stage store that
// routers follow, the registry of which migration claims which table (with the table's definition
// as it was claimed, so a schema change is caught), and this database's identity (so a worker
// connected to the wrong server is caught). Created idempotently; removed only when the migration is
// retired, never with user data.
// Also the functions the triggers call: the one that tells a router which keys its own session
// wrote (`note_written`), the guards' refusals, and the table fingerprint that drift checks compare.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { withTransaction } from './pools';

export const HELPER_SCHEMA = 'live_migrate';
/** A session with this setting 'on' has the keys it writes noted in WRITTEN_SETTING. */
export const COLLECT_SETTING = 'live_migrate.collect';
export const WRITTEN_SETTING = 'live_migrate.written';
/**
 * A collecting session with this setting 'on' is sent the keys instead, one INFO message of
 * WRITTEN_NOTICE_CODE per key with the statement's own response (no request after the write).
 */
export const NOTIFY_SETTING = 'live_migrate.notify';
/** The SQLSTATE of a noted key's INFO message. */
export const WRITTEN_NOTICE_CODE = 'LM001';
/** How many keys one transaction is sent; the next message is '*' (too many), then none. */
export const WRITTEN_NOTICE_LIMIT = 256;
/** Keys sent so far in the transaction (a transaction-local setting, so it starts again at 0). */
const NOTICED_SETTING = 'live_migrate.noticed';
const WRITTEN_LIMIT = 8192;

/**
 * ALTER TABLE ... ADD COLUMN, only when the column is missing: even with IF NOT EXISTS, ALTER TABLE
 * takes the table's exclusive lock first, and the change log is written by every captured write, so
 * it would wait behind (and then hold up) the application's transactions.
 */
function addColumn(table: string, column: string, type: string): string {
  return `DO $add$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_attribute
                    WHERE attrelid = '${HELPER_SCHEMA}.${table}'::regclass AND attname = '${column}' AND NOT attisdropped) THEN
      ALTER TABLE ${HELPER_SCHEMA}.${table} ADD COLUMN ${column} ${type};
    END IF;
  END $add$`;
}

/** note_written with the given arguments; `entry` is appended to the noted line when given. */
function noteWrittenSql(args: string, entry: string): string {
  const line = `jsonb_build_array(table_schema, table_name,
           (SELECT jsonb_agg(part) FROM jsonb_array_elements_text(key) AS part)${entry})::text`;
  return `CREATE OR REPLACE FUNCTION ${HELPER_SCHEMA}.note_written(${args})
     RETURNS void LANGUAGE plpgsql AS $note$
     DECLARE
       written text;
       noticed integer;
     BEGIN
       IF current_setting('${NOTIFY_SETTING}', true) = 'on' THEN
         noticed := coalesce(nullif(current_setting('${NOTICED_SETTING}', true), ''), '0')::integer;
         IF noticed > ${WRITTEN_NOTICE_LIMIT} THEN RETURN; END IF;
         PERFORM set_config('${NOTICED_SETTING}', (noticed + 1)::text, true);
         IF noticed = ${WRITTEN_NOTICE_LIMIT} THEN
           RAISE INFO USING MESSAGE = '*', ERRCODE = '${WRITTEN_NOTICE_CODE}';
         ELSE
           RAISE INFO USING MESSAGE = ${line}, ERRCODE = '${WRITTEN_NOTICE_CODE}';
         END IF;
         RETURN;
       END IF;
       written := coalesce(current_setting('${WRITTEN_SETTING}', true), '');
       IF written = '*' THEN RETURN; END IF;
       IF length(written) > ${WRITTEN_LIMIT} THEN
         written := '*';
       ELSE
         written := written || ${line} || E'\\n';
       END IF;
       PERFORM set_config('${WRITTEN_SETTING}', written, false);
     END
     $note$`;
}

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
  addColumn('stages', 'fenced', 'boolean NOT NULL DEFAULT false'),
  addColumn('routers', 'fence_acknowledged', 'bigint'),
  // ... and the counters each router publishes for the read ramp's gates (router/gate-stats.ts).
  addColumn('routers', 'stats', 'jsonb'),
  // ... and the backend of the session it listens on, so a router whose process died shows as gone
  // at once (its session ends with it) rather than after its heartbeats go silent.
  addColumn('routers', 'listener_pid', 'integer'),
  // ... and, so that two migrations on one database never drain each other's changes, whose change
  // each entry is (capture writes the migration's name).
  addColumn('change_log', 'migration', 'text'),
  // One row per migrated table on this side: the migration that claims it (one table, one
  // migration), which end of it this database is, the table's definition and fingerprint when it was
  // claimed (every chunk, sync and verification compares the live fingerprint with it), the
  // partitions the guards cover, and which of the migration's triggers are on it now.
  `CREATE TABLE IF NOT EXISTS ${HELPER_SCHEMA}.migration_tables (
     table_schema text NOT NULL,
     table_name text NOT NULL,
     migration text NOT NULL,
     side text NOT NULL CHECK (side IN ('old', 'new')),
     shape jsonb NOT NULL,
     definition jsonb NOT NULL,
     fingerprint text NOT NULL,
     partitions text[] NOT NULL DEFAULT '{}',
     captured boolean NOT NULL DEFAULT false,
     guarded boolean NOT NULL DEFAULT false,
     claimed_at timestamptz NOT NULL DEFAULT now(),
     changed_at timestamptz NOT NULL DEFAULT now(),
     PRIMARY KEY (table_schema, table_name)
   )`,
  // This database's identity: a random id created the first time a migration meets it. A migration
  // records it (with the system identifier and database oid) when it prepares, and every activity
  // compares it with the servers it is connected to before it touches data.
  `CREATE TABLE IF NOT EXISTS ${HELPER_SCHEMA}.server_identity (
     singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
     id uuid NOT NULL DEFAULT gen_random_uuid(),
     created_at timestamptz NOT NULL DEFAULT now()
   )`,
  `INSERT INTO ${HELPER_SCHEMA}.server_identity DEFAULT VALUES ON CONFLICT DO NOTHING`,
  // What a router needs, whatever role the application connects as: follow the stage, register
  // and heartbeat, and leave a tombstone when its mirror applies a delete. Nothing else of the
  // helper schema is open to it (the change log is written by capture's SECURITY DEFINER function).
  `GRANT USAGE ON SCHEMA ${HELPER_SCHEMA} TO PUBLIC`,
  `GRANT SELECT ON ${HELPER_SCHEMA}.stages TO PUBLIC`,
  `GRANT SELECT, INSERT, UPDATE, DELETE ON ${HELPER_SCHEMA}.routers TO PUBLIC`,
  `GRANT INSERT ON ${HELPER_SCHEMA}.tombstones TO PUBLIC`,
  // What a table looks like to a copy, a sync or a verification, as one hash: columns (name, type,
  // NOT NULL, identity, generated, default, collation), constraints, unique indexes and the partition
  // key. Non-unique indexes and the list of partitions are left out: neither changes what a row is
  // (partitions attached later are covered by the guards' own check, write-guard.ts).
  // PL/pgSQL, not SQL: every chunk, sync batch and verification range calls it on both sides, and a
  // PL/pgSQL function keeps its query plan for the session, where an SQL one plans it at every call
  // (about 0.2 ms a call instead of 0.8 ms). The hash is the same either way.
  `CREATE OR REPLACE FUNCTION ${HELPER_SCHEMA}.table_fingerprint(rel regclass) RETURNS text
     LANGUAGE plpgsql STABLE SET search_path = pg_catalog AS $fingerprint$
     BEGIN RETURN (
     SELECT md5(concat_ws(E'\\n',
       (SELECT string_agg(concat_ws(' ', quote_ident(a.attname), format_type(a.atttypid, a.atttypmod),
                                    a.attnotnull, a.attidentity, a.attgenerated,
                                    pg_get_expr(d.adbin, d.adrelid), a.attcollation),
                          E'\\n' ORDER BY a.attname)
          FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped),
       (SELECT string_agg(concat_ws(' ', c.conname, c.contype, pg_get_constraintdef(c.oid)), E'\\n' ORDER BY c.conname)
          FROM pg_constraint c WHERE c.conrelid = rel),
       (SELECT string_agg(pg_get_indexdef(i.indexrelid), E'\\n' ORDER BY i.indexrelid)
          FROM pg_index i
         WHERE i.indrelid = rel AND i.indisunique
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid AND c.conrelid = rel)),
       pg_get_partkeydef(rel))));
     END
     $fingerprint$`,
  // The guards' refusals (write-guard.ts). TRUNCATE of a migrated table or any of its partitions is
  // refused for everyone on both sides while the migration runs: its rows would stay on the other
  // side. Writes to the side that gave up authority are refused for every session but the
  // migration's own role (TG_ARGV[1]): session_user, which a session cannot change without being a
  // superuser, unlike any setting.
  `CREATE OR REPLACE FUNCTION ${HELPER_SCHEMA}.refuse_truncate() RETURNS trigger
     LANGUAGE plpgsql AS $refuse$
     BEGIN
       RAISE EXCEPTION 'TRUNCATE of %.% is refused while migration % moves it: its rows would stay on the other database', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0]
         USING ERRCODE = 'object_not_in_prerequisite_state',
               HINT = 'delete the rows instead (the migration carries deletes), or end the migration first';
     END
     $refuse$`,
  `CREATE OR REPLACE FUNCTION ${HELPER_SCHEMA}.refuse_writes() RETURNS trigger
     LANGUAGE plpgsql AS $refuse$
     BEGIN
       IF session_user IS DISTINCT FROM TG_ARGV[1] THEN
         RAISE EXCEPTION 'writes to %.% are refused here: migration % has moved this table''s writes to the other database', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_ARGV[0]
           USING ERRCODE = 'read_only_sql_transaction',
                 HINT = 'write through the migration''s router, which sends writes to the database that takes them';
       END IF;
       IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
       RETURN NEW;
     END
     $refuse$`,
  // Called by the capture trigger for a session that asked (a router's, with live_migrate.collect on)
  // to be told the keys it writes, as [schema, table, key as text, change log entry id]. The router
  // mirrors exactly those keys, and then forgets exactly those entries (forget_mirrored).
  // - With live_migrate.notify on (routers since the notices), each key goes to the client at once
  //   as an INFO message (always sent to the client whatever client_min_messages says, and not
  //   logged by default), so the router learns them with the write's own response. A transaction
  //   that rolls back has sent them too: the router drops what a ROLLBACK ends. Past
  //   WRITTEN_NOTICE_LIMIT keys in one transaction it sends '*' and then nothing (too many to mirror
  //   one by one: the change log drain brings them).
  // - Otherwise (routers before the notices) the key is appended to the session's
  //   live_migrate.written setting. A session setting changed in a transaction that rolls back is
  //   restored, so the list holds committed writes only. The router reads and clears it after each
  //   write. Past WRITTEN_LIMIT characters the list becomes '*'.
  // A router that asks for notices from a database whose note_written predates them finds its keys
  // in the setting instead (statements.ts asks for it after a write that changed rows and was sent
  // no key). The three-argument form (no entry id) is what capture installed by an earlier version
  // calls: its keys are mirrored and their entries left to the drain.
  noteWrittenSql('table_schema text, table_name text, key jsonb', ''),
  noteWrittenSql('table_schema text, table_name text, key jsonb, entry bigint', ', entry::text'),
  // Called by a router after its mirror committed the keys of these entries on the other side, so
  // that reconciliation does not sync them again. The mirror read the rows after the entries'
  // transactions committed, so the other side holds their writes or a later state; a later write of
  // the same key has an entry of its own, which stays. An entry a drain is deleting right now is
  // skipped, never waited for. SECURITY DEFINER: the application's role has no other right on the
  // change log. A role that called it with ids its writes did not make would only leave old and new
  // apart for verification to find, as an INSERT into tombstones (also granted) would.
  `CREATE OR REPLACE FUNCTION ${HELPER_SCHEMA}.forget_mirrored(for_migration text, entries bigint[])
     RETURNS void LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $forget$
     DELETE FROM ${HELPER_SCHEMA}.change_log
      WHERE id IN (SELECT id FROM ${HELPER_SCHEMA}.change_log
                    WHERE id = ANY(entries) AND migration = for_migration
                      FOR UPDATE SKIP LOCKED)
     $forget$`,
];

/** Creates the helper schema and tables when missing; safe to run from several workers at once. */
export async function ensureHelperSchema(pool: pg.Pool): Promise<void> {
  // Most calls find it in place: one read, no DDL (ALTER, GRANT and CREATE OR REPLACE take locks the
  // application's writers could queue behind).
  if (await helpersCurrent(pool)) return;
  await withTransaction(pool, async (client) => {
    // Concurrent CREATE ... IF NOT EXISTS can still collide in the catalog; take turns.
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('${HELPER_SCHEMA}'), 0)`);
    if (await helpersCurrent(client)) return;
    for (const statement of HELPER_DDL) await client.query(statement);
    await client.query(
      `CREATE TABLE IF NOT EXISTS ${HELPER_SCHEMA}.helper_version (
         singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), version text NOT NULL)`,
    );
    await client.query(
      `INSERT INTO ${HELPER_SCHEMA}.helper_version (version) VALUES ($1)
       ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version`,
      [HELPER_VERSION],
    );
  });
}

/** What this code's helper DDL is: a database whose helpers were made by other code gets them again. */
const HELPER_VERSION = createHash('sha1').update(HELPER_DDL.join('\n')).digest('hex').slice(0, 16);

async function helpersCurrent(db: pg.Pool | pg.ClientBase): Promise<boolean> {
  const { rows } = await db.query<{ present: boolean }>(
    `SELECT to_regclass('${HELPER_SCHEMA}.helper_version') IS NOT NULL AS present`,
  );
  if (rows[0]?.present !== true) return false;
  const version = await db.query<{ version: string }>(`SELECT version FROM ${HELPER_SCHEMA}.helper_version`);
  return version.rows[0]?.version === HELPER_VERSION;
}

/**
 * The name of one of a migration's own objects (its triggers, its capture functions): named for the
 * migration, so two migrations never share one and an abort or retire removes only its own. Long
 * names keep a hash of the whole so they stay unique within PostgreSQL's 63 bytes.
 */
export function migrationObjectName(kind: string, migration: string, detail?: string): string {
  const full = [kind, migration, detail].filter((part) => part !== undefined).join('_');
  if (Buffer.byteLength(full) <= 63) return full;
  const digest = createHash('sha1').update(full).digest('hex').slice(0, 10);
  return `${Buffer.from(full)
    .subarray(0, 52)
    .toString('utf8')
    .replace(/\uFFFD+$/, '')}_${digest}`;
}
