// The table registry: which migration claims which table, and what the table looked like when it
// did. A migration claims its tables on both sides when it prepares (one table, one migration: a
// second migration naming a claimed table is refused with both names) and releases them when it is
// retired or aborted. Every copy, sync and verification reads a table's shape from here, after
// comparing the table's live fingerprint with the one recorded: a schema change on either side since
// the claim (a column added, a type changed, a constraint dropped, the table renamed) stops the work
// with the reason before any row moves under the wrong shape. The check is made at every call (one
// catalog query per side); only the claim's shape is kept between calls, under the fingerprint it was
// recorded with, so that the many checks of a copy do not ship and parse the claim each time.
import type pg from 'pg';
import type { ConnectionName } from '../model/connections';
import { HELPER_SCHEMA } from '../db/helper-schema';
import { refuse } from '../model/errors';
import type { TableRef, TableShape } from '../model/tables';
import { withTransaction, type NamedPools } from '../db/pools';
import { quoteLiteral, quoteTable } from '../db/sql';
import type { SyncShapes } from '../db/sync';
import { describeDrift } from '../db/schema-drift';
import { readTableDefinition, type TableDefinition } from '../db/table-definition';
import { MigrationFault, SCHEMA_CHANGED } from '../model/errors';

export interface ClaimedTable {
  shape: TableShape;
  definition: TableDefinition;
}

/** A registry row with what its table is now (TableRegistry.check). */
export interface CheckedTable extends RegistryRow {
  present: boolean;
  /** The live fingerprint equals the one recorded. */
  same: boolean;
  /** The partitions the table has now (empty for a plain table). */
  partitionsNow: string[];
}

export interface RegistryRow {
  table: TableRef;
  migration: string;
  side: ConnectionName;
  shape: TableShape;
  definition: TableDefinition;
  fingerprint: string;
  /** Partitions (schema-qualified, quoted) the guards covered when last checked. */
  partitions: string[];
  captured: boolean;
  guarded: boolean;
}

/** The SQL expression of a table's regclass from its schema and name parameters. */
const REGCLASS = (schema: string, table: string) => `to_regclass(format('%I.%I', ${schema}, ${table}))`;

/** Partitions of a table at every level, schema-qualified, in one order. */
export const PARTITIONS_SQL = (rel: string) => `ARRAY(
  SELECT format('%I.%I', n.nspname, c.relname)
    FROM pg_partition_tree(${rel}) AS tree JOIN pg_class c ON c.oid = tree.relid
    JOIN pg_namespace n ON n.oid = c.relnamespace
   WHERE tree.relid <> ${rel} ORDER BY 1)`;

function schemaChanged(message: string, table: TableRef, side: ConnectionName): MigrationFault {
  return new MigrationFault(SCHEMA_CHANGED, message, { table: `${table.schema}.${table.table}`, side });
}

/** One look at a table's claim on one side, and whether its definition is still the one recorded. */
export interface ClaimLook {
  migration: string | null;
  /** The fingerprint recorded with the claim. */
  fingerprint: string | null;
  /** The claim's shape and definition: null in a quick look, which leaves them on the server. */
  shape: TableShape | null;
  definition: TableDefinition | null;
  present: boolean;
  same: boolean | null;
}

/**
 * The query for a ClaimLook; the table's schema and name as SQL text expressions. A quick look
 * compares the fingerprints just the same, but leaves the recorded shape and definition (kilobytes of
 * JSON) on the server: the caller has them from an earlier look at the same fingerprint.
 */
function claimLookSql(schema: string, name: string, quick = false): string {
  const recorded = quick ? 'NULL::jsonb AS shape, NULL::jsonb AS definition' : 'r.shape, r.definition';
  return `SELECT r.migration, r.fingerprint, ${recorded}, t.rel IS NOT NULL AS present,
                 r.fingerprint = ${HELPER_SCHEMA}.table_fingerprint(t.rel) AS same
            FROM (SELECT ${REGCLASS(schema, name)} AS rel) AS t
            LEFT JOIN ${HELPER_SCHEMA}.migration_tables r ON r.table_schema = ${schema} AND r.table_name = ${name}`;
}

/**
 * The ClaimLook query for `table` with literals, to run among other statements in one round trip (a
 * chunk takes a quick look at the target inside its own transaction); TableRegistry.shapeFromLook
 * reads it.
 */
export function claimLookSqlFor(table: TableRef, quick = false): string {
  return claimLookSql(`${quoteLiteral(table.schema)}::text`, `${quoteLiteral(table.table)}::text`, quick);
}

/** A registry row as the database gives it: the table as two columns. */
type StoredRow = Omit<RegistryRow, 'table'> & { table_schema: string; table_name: string };

function rowFrom({ table_schema, table_name, ...rest }: StoredRow): RegistryRow {
  return { table: { schema: table_schema, table: table_name }, ...rest };
}

export class TableRegistry implements SyncShapes {
  /**
   * Claims' shapes by side, migration, table and the fingerprint recorded with them. A shape is a
   * function of what the fingerprint covers (the columns, their types and the key), so a look whose
   * recorded fingerprint matches, and whose live fingerprint equals it, may use the shape kept here.
   */
  private readonly recordedShapes = new Map<string, TableShape>();

  constructor(private readonly pools: NamedPools) {}

  private recordedShapeKey(
    connection: ConnectionName,
    migration: string,
    table: TableRef,
    fingerprint: string,
  ) {
    return JSON.stringify([connection, migration, table.schema, table.table, fingerprint]);
  }

  /**
   * Claims `tables` for `migration` on one side, recording each table's shape, definition,
   * fingerprint and partitions, in one transaction. Refuses (non-retryable) when another migration
   * claims one of them. Claiming again for the same migration records the tables' definitions as they
   * are now (after an accepted schema change), but keeps the partitions the guards covered, so a
   * partition attached meanwhile is still found and adopted (write-guard.ts, coverPartitions).
   * `client` runs it inside the caller's transaction (a change of the migration's own, recorded as
   * it commits).
   */
  async claim(
    connection: ConnectionName,
    migration: string,
    tables: ClaimedTable[],
    within?: pg.ClientBase,
  ): Promise<void> {
    const inTransaction = <T>(work: (client: pg.ClientBase) => Promise<T>) =>
      within !== undefined ? work(within) : withTransaction(this.pools.get(connection), work);
    await inTransaction(async (client) => {
      // Two migrations preparing at once: one at a time per database.
      await client.query(`SELECT pg_advisory_xact_lock(hashtext('${HELPER_SCHEMA}'), 1)`);
      const claimed = await client.query<{
        table_schema: string;
        table_name: string;
        migration: string;
        since: string;
      }>(
        `SELECT table_schema, table_name, migration, to_char(claimed_at, 'YYYY-MM-DD HH24:MI TZ') AS since
           FROM ${HELPER_SCHEMA}.migration_tables
          WHERE migration <> $1 AND (table_schema, table_name) IN (SELECT * FROM unnest($2::text[], $3::text[]))`,
        [migration, tables.map((t) => t.shape.table.schema), tables.map((t) => t.shape.table.table)],
      );
      if (claimed.rows.length > 0) {
        const list = claimed.rows.map(
          (row) =>
            `${quoteTable({ schema: row.table_schema, table: row.table_name })} by migration ${row.migration} (since ${row.since})`,
        );
        throw refuse(
          `migration ${migration} cannot take ${list.join(', ')}: that table is already being migrated on the ${connection} database (${this.pools.display(connection)}), and one table can be in one migration at a time. Finish (retire) or abort the other migration first, or leave the table out of this one`,
        );
      }
      for (const { shape, definition } of tables) {
        const rel = REGCLASS('$1::text', '$2::text');
        await client.query(
          `INSERT INTO ${HELPER_SCHEMA}.migration_tables
             (table_schema, table_name, migration, side, shape, definition, fingerprint, partitions)
           VALUES ($1, $2, $3, $4, $5, $6, ${HELPER_SCHEMA}.table_fingerprint(${rel}), ${PARTITIONS_SQL(rel)})
           ON CONFLICT (table_schema, table_name) DO UPDATE
             SET side = EXCLUDED.side, shape = EXCLUDED.shape, definition = EXCLUDED.definition,
                 fingerprint = EXCLUDED.fingerprint, changed_at = now()`,
          [
            shape.table.schema,
            shape.table.table,
            migration,
            connection,
            JSON.stringify(shape),
            JSON.stringify(definition),
          ],
        );
      }
    });
  }

  /** True when this database has the registry (a migration has met it and not dropped its helpers). */
  async present(client: pg.Pool | pg.ClientBase): Promise<boolean> {
    const found = await client.query<{ present: boolean }>(
      `SELECT to_regclass('${HELPER_SCHEMA}.migration_tables') IS NOT NULL AS present`,
    );
    return found.rows[0]?.present === true;
  }

  /** Releases every table `migration` claims on one side; returns how many. Never touches another's. */
  async release(connection: ConnectionName, migration: string): Promise<number> {
    const pool = this.pools.get(connection);
    if (!(await this.present(pool))) return 0;
    const released = await pool.query(`DELETE FROM ${HELPER_SCHEMA}.migration_tables WHERE migration = $1`, [
      migration,
    ]);
    return released.rowCount ?? 0;
  }

  /** The registry rows `migration` holds on one side (all of them, or those of `tables`). */
  async rows(
    client: pg.Pool | pg.ClientBase,
    migration: string,
    tables?: TableRef[],
  ): Promise<RegistryRow[]> {
    const { rows } = await client.query<StoredRow>(
      `SELECT table_schema, table_name, migration, side, shape, definition, fingerprint, partitions, captured, guarded
         FROM ${HELPER_SCHEMA}.migration_tables
        WHERE migration = $1 ${tables === undefined ? '' : 'AND (table_schema, table_name) IN (SELECT * FROM unnest($2::text[], $3::text[]))'}
        ORDER BY table_schema, table_name`,
      tables === undefined
        ? [migration]
        : [migration, tables.map((t) => t.schema), tables.map((t) => t.table)],
    );
    return rows.map(rowFrom);
  }

  /** Notes which of the migration's triggers are on a table now (capture.ts, write-guard.ts). */
  async mark(
    client: pg.ClientBase,
    migration: string,
    table: TableRef,
    flags: { captured?: boolean; guarded?: boolean },
  ): Promise<void> {
    // Removing a trigger after the helper schema is gone (a retried retire) has nothing to note.
    if (!(await this.present(client))) return;
    await client.query(
      `UPDATE ${HELPER_SCHEMA}.migration_tables
          SET captured = coalesce($4, captured), guarded = coalesce($5, guarded), changed_at = now()
        WHERE table_schema = $1 AND table_name = $2 AND migration = $3`,
      [table.schema, table.table, migration, flags.captured ?? null, flags.guarded ?? null],
    );
  }

  /** Records the partitions the guards now cover. */
  async setPartitions(
    client: pg.ClientBase,
    migration: string,
    table: TableRef,
    partitions: string[],
  ): Promise<void> {
    await client.query(
      `UPDATE ${HELPER_SCHEMA}.migration_tables SET partitions = $4, changed_at = now()
        WHERE table_schema = $1 AND table_name = $2 AND migration = $3`,
      [table.schema, table.table, migration, partitions],
    );
  }

  /**
   * Every table `migration` claims on one side, each with what it is now: present, the same
   * definition as claimed, and (for a partitioned table) its partitions. One query: what a drain
   * batch checks before it syncs anything, and what the partition coverage reads.
   */
  async check(connection: ConnectionName, migration: string): Promise<CheckedTable[]> {
    const { rows } = await this.pools
      .get(connection)
      .query<StoredRow & { present: boolean; same: boolean | null; partitions_now: string[] | null }>(
        `SELECT r.table_schema, r.table_name, r.migration, r.side, r.shape, r.definition, r.fingerprint,
              r.partitions, r.captured, r.guarded, t.rel IS NOT NULL AS present,
              r.fingerprint = ${HELPER_SCHEMA}.table_fingerprint(t.rel) AS same,
              CASE WHEN t.rel IS NOT NULL AND (r.partitions <> '{}' OR r.definition->>'partitionBy' IS NOT NULL)
                   THEN ${PARTITIONS_SQL('t.rel')} END AS partitions_now
         FROM ${HELPER_SCHEMA}.migration_tables r
        CROSS JOIN LATERAL (SELECT ${REGCLASS('r.table_schema', 'r.table_name')} AS rel) AS t
        WHERE r.migration = $1
        ORDER BY r.table_schema, r.table_name`,
        [migration],
      );
    return rows.map(({ present, same, partitions_now, ...stored }) => ({
      ...rowFrom(stored),
      present,
      same: same === true,
      partitionsNow: partitions_now ?? [],
    }));
  }

  /**
   * The table's shape as claimed, after checking that its definition on this side has not changed
   * since: refuses (non-retryable, SchemaChanged) a table that changed, is gone, or is not this
   * migration's. `checked` is a look taken already (check()); without it, one query for this table.
   */
  async shape(
    connection: ConnectionName,
    migration: string,
    table: TableRef,
    checked?: CheckedTable[],
  ): Promise<TableShape> {
    if (checked !== undefined) {
      const row = checked.find(
        (entry) => entry.table.schema === table.schema && entry.table.table === table.table,
      );
      return this.checkedShape(connection, migration, table, row);
    }
    const pool = this.pools.get(connection);
    const look = (quick: boolean) =>
      pool.query<ClaimLook>(claimLookSql('$1::text', '$2::text', quick), [table.schema, table.table]);
    return this.shapeFromLook(connection, migration, table, (await look(true)).rows[0]!, async () => {
      return (await look(false)).rows[0]!;
    });
  }

  /**
   * shape(), from a look taken already (claimLookSqlFor(table, true), among other statements). When the
   * quick look cannot be answered from a shape kept here (the first look at this claim, or anything
   * but a match), `lookAgain` takes the full look (on the caller's session, when it holds the table).
   */
  async shapeFromLook(
    connection: ConnectionName,
    migration: string,
    table: TableRef,
    found: ClaimLook,
    lookAgain: () => Promise<ClaimLook>,
  ): Promise<TableShape> {
    if (found.migration === migration && found.present && found.same === true && found.fingerprint !== null) {
      const kept = this.recordedShapes.get(
        this.recordedShapeKey(connection, migration, table, found.fingerprint),
      );
      if (kept !== undefined) return kept;
    }
    const full = found.shape === null ? await lookAgain() : found;
    const row =
      full.migration === null || full.shape === null || full.definition === null
        ? undefined
        : {
            ...full,
            migration: full.migration,
            shape: full.shape,
            definition: full.definition,
            same: full.same === true,
          };
    const shape = await this.checkedShape(connection, migration, table, row);
    if (full.fingerprint !== null) {
      this.recordedShapes.set(this.recordedShapeKey(connection, migration, table, full.fingerprint), shape);
    }
    return shape;
  }

  private async checkedShape(
    connection: ConnectionName,
    migration: string,
    table: TableRef,
    row: Pick<CheckedTable, 'migration' | 'shape' | 'definition' | 'present' | 'same'> | undefined,
  ): Promise<TableShape> {
    const pool = this.pools.get(connection);
    const name = quoteTable(table);
    const where = `the ${connection} database (${this.pools.display(connection)})`;
    if (row === undefined) {
      throw refuse(
        `${name} on ${where} is not claimed by migration ${migration}: this database was not prepared for it (is the worker connected to the right servers?)`,
      );
    }
    if (row.migration !== migration) {
      throw refuse(`${name} on ${where} belongs to migration ${row.migration}, not to ${migration}`);
    }
    if (!row.present) {
      throw schemaChanged(
        `${name} no longer exists on ${where} (dropped or renamed) since migration ${migration} prepared; nothing is copied, synced or verified until it is back under its name: restore it, then resume the migration (or abort it)`,
        table,
        connection,
      );
    }
    if (!row.same) {
      const now = await readTableDefinition(pool, table);
      const changes = now === undefined ? ['the table is gone'] : describeDrift(row.definition, now);
      throw schemaChanged(
        `the definition of ${name} changed on ${where} since migration ${migration} prepared: ${changes.join('; ') || 'its constraints or unique indexes changed'}. Nothing is copied, synced or verified under the wrong shape: make the same change on the other database (see the README, "Schema changes during a migration"), then resume the migration, which compares both sides again and goes on when they match`,
        table,
        connection,
      );
    }
    return row.shape;
  }

  /**
   * One look at both sides for a drain batch (two queries, whatever the number of tables): the
   * shapes its syncs use, checked, and the look itself for the partition coverage.
   */
  async forBatch(input: {
    migration: string;
    from: ConnectionName;
    to: ConnectionName;
  }): Promise<SyncShapes & { looked: Record<'from' | 'to', CheckedTable[]> }> {
    const [from, to] = await Promise.all([
      this.check(input.from, input.migration),
      this.check(input.to, input.migration),
    ]);
    return {
      looked: { from, to },
      forSync: async (sync) => {
        const [shape] = await Promise.all([
          this.shape(sync.from, sync.migration, sync.table, from),
          this.shape(sync.to, sync.migration, sync.table, to),
        ]);
        return shape;
      },
    };
  }

  /** The shape for moving rows of `table` between two sides: both are checked, `from`'s is returned. */
  async forSync(input: {
    migration: string;
    from: ConnectionName;
    to: ConnectionName;
    table: TableRef;
  }): Promise<TableShape> {
    const [shape] = await Promise.all([
      this.shape(input.from, input.migration, input.table),
      this.shape(input.to, input.migration, input.table),
    ]);
    return shape;
  }
}
