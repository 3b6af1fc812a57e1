// Inspector: reads what a table is to the data path (columns, types, primary key, rough size) and
// refuses a table that cannot be migrated (missing, or without a primary key) with a message that
// says why. The whole definition (defaults, constraints, indexes, partitions), its comparison
// between old and new, and creating the table on new are table-definition.ts's; preparing a
// migration's tables is preparation.ts's.
import type pg from 'pg';
import type { ConnectionName } from '../model/connections';
import { quoteTable } from './sql';
import { refuse } from '../model/errors';
import type { ColumnShape, TableRef, TableShape } from '../model/tables';

async function findTable(
  pool: pg.Pool | pg.ClientBase,
  table: TableRef,
): Promise<{ oid: number; estimated_rows: string; total_bytes: string } | undefined> {
  const found = await pool.query<{ oid: number; estimated_rows: string; total_bytes: string }>(
    // The planner's estimate (reltuples) of the table, or of each leaf of a partitioned one (whose
    // own autovacuum never sets). A table never analyzed (reltuples -1: just loaded) counts its live
    // rows as the statistics collector has them, rather than none.
    `SELECT c.oid,
            (SELECT coalesce(sum(CASE WHEN leaf.reltuples >= 0 THEN leaf.reltuples
                                      ELSE coalesce(stats.n_live_tup, 0) END), 0)
               FROM (SELECT c.oid AS relid WHERE c.relkind = 'r'
                     UNION ALL
                     SELECT relid FROM pg_partition_tree(c.oid) WHERE isleaf) leaves
               JOIN pg_class leaf ON leaf.oid = leaves.relid
               LEFT JOIN pg_stat_all_tables stats ON stats.relid = leaf.oid)::bigint AS estimated_rows,
            pg_total_relation_size(c.oid) AS total_bytes
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
    [table.schema, table.table],
  );
  return found.rows[0];
}

/** Reads a table's shape from the catalog; refuses a missing table or one without a primary key. */
export async function readTableShape(
  pool: pg.Pool | pg.ClientBase,
  table: TableRef,
  side: { name: ConnectionName; display: string },
): Promise<TableShape> {
  const name = quoteTable(table);
  const found = await findTable(pool, table);
  if (found === undefined) {
    throw refuse(`table ${name} does not exist on the ${side.name} database (${side.display})`);
  }
  const columns = await pool.query<ColumnShape & { identity: string }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS "notNull",
            a.attgenerated <> '' AS generated, a.attidentity AS identity
       FROM pg_attribute a
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [found.oid],
  );
  const key = await pool.query<{ name: string; type: string }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type
       FROM pg_index i
       CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
       JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
      WHERE i.indrelid = $1 AND i.indisprimary
      ORDER BY k.position`,
    [found.oid],
  );
  if (key.rows.length === 0) {
    throw refuse(
      `table ${name} on the ${side.name} database has no primary key; rows cannot be matched between old and new without one: add a primary key, then start again`,
    );
  }
  return {
    table,
    columns: columns.rows.map(({ name: column, type, notNull, generated }) => ({
      name: column,
      type,
      notNull,
      ...(generated === true && { generated }),
    })),
    primaryKey: key.rows.map((row) => row.name),
    primaryKeyTypes: key.rows.map((row) => row.type),
    copyColumns: columns.rows.filter((column) => column.generated !== true).map((column) => column.name),
    alwaysIdentity: columns.rows.filter((column) => column.identity === 'a').map((column) => column.name),
    estimatedRows: Number(found.estimated_rows),
    totalBytes: Number(found.total_bytes),
  };
}
