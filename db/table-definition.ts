// Table definitions: reads everything that makes a table behave as it does (columns with their
// defaults, identity and generation, constraints, indexes, serial sequences, partitions) from the
// catalog, writes the DDL that reproduces it on another server, and compares two servers' definitions
// so that a difference that would break a sync, or let the sides disagree later, is caught before any
// row moves. Plain data in and out (it travels through workflows); no Temporal here.
import pg from 'pg';
import type { TableRef } from '../model/tables';
import { withSession, withTransaction } from './pools';
import { quoteIdent, quoteLiteral, quoteTable } from './sql';

export interface ColumnDefinition {
  name: string;
  /** format_type(atttypid, atttypmod), e.g. "numeric(12,2)", "public.mood", "text[]". */
  type: string;
  notNull: boolean;
  /** The expression of a plain default (neither identity nor generated), as pg_get_expr writes it. */
  default: string | null;
  identity: 'always' | 'by default' | null;
  /** The identity sequence's options (INCREMENT BY ... CYCLE), to create it alike; null without identity. */
  identityOptions: string | null;
  /** The expression of a STORED generated column. */
  generated: string | null;
  /** A collation other than the type's own, quoted and schema-qualified, e.g. "pg_catalog"."C". */
  collation: string | null;
}

export type ConstraintKind = 'primary key' | 'unique' | 'check' | 'exclusion' | 'foreign key';

export interface ConstraintDefinition {
  name: string;
  kind: ConstraintKind;
  /** pg_get_constraintdef, e.g. "UNIQUE (handle)", "FOREIGN KEY (customer_id) REFERENCES public.customers(id)". */
  definition: string;
  /** The constrained columns, in the constraint's order (empty for a CHECK on no column). */
  columns: string[];
  /** The referenced table of a foreign key. */
  references?: TableRef;
}

/** An index that backs no constraint (those come with their constraint). */
export interface IndexDefinition {
  name: string;
  unique: boolean;
  /** pg_get_indexdef, e.g. "CREATE INDEX orders_customer_idx ON public.orders USING btree (customer_id)". */
  definition: string;
}

export interface PartitionDefinition {
  table: TableRef;
  /** pg_get_expr of the bound: "FOR VALUES FROM (...) TO (...)", "FOR VALUES IN (...)", "DEFAULT", ... */
  bound: string;
  /** pg_get_partkeydef when this partition is partitioned itself. */
  partitionBy: string | null;
  partitions: PartitionDefinition[];
}

export interface OwnedSequence {
  column: string;
  sequence: TableRef;
  /** AS type INCREMENT BY ... CYCLE: enough to create it alike. */
  options: string;
}

export interface TableDefinition {
  table: TableRef;
  /** In attnum order, dropped columns excluded. */
  columns: ColumnDefinition[];
  /** Primary key first, then unique, exclusion, check and foreign key constraints, each by name. */
  constraints: ConstraintDefinition[];
  indexes: IndexDefinition[];
  /** Sequences of serial-style columns (OWNED BY the column); identity sequences come with their column. */
  ownedSequences: OwnedSequence[];
  /** pg_get_partkeydef, for a partitioned table. */
  partitionBy: string | null;
  /** Its partitions, recursively; DEFAULT partitions last at each level. */
  partitions: PartitionDefinition[];
}

const CONSTRAINT_KINDS: Record<string, ConstraintKind> = {
  p: 'primary key',
  u: 'unique',
  x: 'exclusion',
  c: 'check',
  f: 'foreign key',
};

interface SequenceRow {
  type: string;
  increment: string;
  min: string;
  max: string;
  start: string;
  cache: string;
  cycle: boolean;
}

function sequenceOptions(row: SequenceRow, withType: boolean): string {
  return [
    ...(withType ? [`AS ${row.type}`] : []),
    `INCREMENT BY ${row.increment} MINVALUE ${row.min} MAXVALUE ${row.max} START WITH ${row.start} CACHE ${row.cache}`,
    row.cycle ? 'CYCLE' : 'NO CYCLE',
  ].join(' ');
}

const SEQUENCE_COLUMNS = `format_type(s.seqtypid, NULL) AS type, s.seqincrement::text AS increment,
  s.seqmin::text AS min, s.seqmax::text AS max, s.seqstart::text AS start, s.seqcache::text AS cache,
  s.seqcycle AS cycle`;

/**
 * Runs `work` with search_path = pg_catalog, so that pg_get_expr, pg_get_constraintdef,
 * pg_get_indexdef and format_type qualify every name outside pg_catalog: the texts then mean the
 * same on any server and in any session, and two servers' texts can be compared. The session's own
 * search_path is put back afterwards (or rolled back with the caller's failed transaction).
 */
async function withQualifiedNames<T>(client: pg.ClientBase, work: () => Promise<T>): Promise<T> {
  const saved = await client.query<{ path: string }>(
    `SELECT current_setting('search_path') AS path, set_config('search_path', 'pg_catalog', false)`,
  );
  const restore = () =>
    client.query(`SELECT set_config('search_path', $1, false)`, [saved.rows[0]?.path ?? '']);
  let result: T;
  try {
    result = await work();
  } catch (err) {
    // In the caller's aborted transaction the restore fails too; its rollback restores the path.
    await restore().catch(() => undefined);
    throw err;
  }
  await restore();
  return result;
}

async function readPartitions(client: pg.ClientBase, parent: number): Promise<PartitionDefinition[]> {
  const { rows } = await client.query<{
    oid: number;
    schema: string;
    name: string;
    bound: string;
    partition_by: string | null;
  }>(
    `SELECT c.oid, n.nspname AS schema, c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound,
            CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partition_by
       FROM pg_inherits h
       JOIN pg_class c ON c.oid = h.inhrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE h.inhparent = $1 AND c.relkind IN ('r', 'p') AND NOT h.inhdetachpending
      ORDER BY pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', c.relname`,
    [parent],
  );
  const partitions: PartitionDefinition[] = [];
  for (const row of rows) {
    partitions.push({
      table: { schema: row.schema, table: row.name },
      bound: row.bound,
      partitionBy: row.partition_by,
      partitions: row.partition_by === null ? [] : await readPartitions(client, row.oid),
    });
  }
  return partitions;
}

async function readDefinition(client: pg.ClientBase, table: TableRef): Promise<TableDefinition | undefined> {
  const found = await client.query<{ oid: number; partition_by: string | null }>(
    `SELECT c.oid, CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END AS partition_by
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')`,
    [table.schema, table.table],
  );
  const relation = found.rows[0];
  if (relation === undefined) return undefined;
  const oid = relation.oid;

  const columns = await client.query<
    Omit<ColumnDefinition, 'collation' | 'identityOptions'> & {
      collation_schema: string | null;
      collation_name: string | null;
    }
  >(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS "notNull",
            CASE WHEN a.attgenerated = '' AND a.attidentity = '' THEN pg_get_expr(d.adbin, d.adrelid) END AS "default",
            CASE a.attidentity WHEN 'a' THEN 'always' WHEN 'd' THEN 'by default' END AS identity,
            CASE WHEN a.attgenerated = 's' THEN pg_get_expr(d.adbin, d.adrelid) END AS generated,
            cn.nspname AS collation_schema, co.collname AS collation_name
       FROM pg_attribute a
       JOIN pg_type t ON t.oid = a.atttypid
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> t.typcollation
       LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
      WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
      ORDER BY a.attnum`,
    [oid],
  );

  const constraints = await client.query<{
    name: string;
    contype: string;
    definition: string;
    columns: string[];
    ref_schema: string | null;
    ref_table: string | null;
  }>(
    // A foreign key to a partitioned table has one extra row per referenced partition, each with the
    // real one as its parent on the same table: internal, so left out.
    `SELECT k.conname AS name, k.contype, pg_get_constraintdef(k.oid) AS definition,
            ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY AS u(attnum, position)
                    JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum
                   ORDER BY u.position)::text[] AS columns,
            rn.nspname AS ref_schema, r.relname AS ref_table
       FROM pg_constraint k
       LEFT JOIN pg_class r ON r.oid = k.confrelid
       LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
      WHERE k.conrelid = $1 AND k.contype IN ('p', 'u', 'x', 'c', 'f')
        AND NOT EXISTS (SELECT 1 FROM pg_constraint up WHERE up.oid = k.conparentid AND up.conrelid = k.conrelid)
      ORDER BY position(k.contype IN 'puxcf'), k.conname`,
    [oid],
  );

  // An invalid index (a failed CREATE INDEX CONCURRENTLY, or one still being built) is not part of
  // the definition: it is not used and not reproduced.
  const indexes = await client.query<IndexDefinition>(
    `SELECT c.relname AS name, i.indisunique AS "unique", pg_get_indexdef(i.indexrelid) AS definition
       FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
      WHERE i.indrelid = $1 AND i.indisvalid
        AND NOT EXISTS (SELECT 1 FROM pg_constraint k
                         WHERE k.conrelid = i.indrelid AND k.conindid = i.indexrelid AND k.contype IN ('p', 'u', 'x'))
      ORDER BY c.relname`,
    [oid],
  );

  // deptype 'a': a serial column's sequence (OWNED BY); 'i': an identity column's own.
  const sequences = await client.query<
    { column: string; schema: string; name: string; deptype: 'a' | 'i' } & SequenceRow
  >(
    `SELECT a.attname AS "column", sn.nspname AS schema, c.relname AS name, dep.deptype, ${SEQUENCE_COLUMNS}
       FROM pg_depend dep
       JOIN pg_class c ON c.oid = dep.objid AND c.relkind = 'S'
       JOIN pg_namespace sn ON sn.oid = c.relnamespace
       JOIN pg_sequence s ON s.seqrelid = c.oid
       JOIN pg_attribute a ON a.attrelid = dep.refobjid AND a.attnum = dep.refobjsubid
      WHERE dep.classid = 'pg_class'::regclass AND dep.refclassid = 'pg_class'::regclass
        AND dep.refobjid = $1 AND dep.deptype IN ('a', 'i')
      ORDER BY a.attnum`,
    [oid],
  );

  const identitySequences = new Map(
    sequences.rows.filter((row) => row.deptype === 'i').map((row) => [row.column, row]),
  );
  return {
    table: { schema: table.schema, table: table.table },
    columns: columns.rows.map((row) => {
      const sequence = row.identity === null ? undefined : identitySequences.get(row.name);
      return {
        name: row.name,
        type: row.type,
        notNull: row.notNull,
        default: row.default,
        identity: row.identity,
        identityOptions: sequence === undefined ? null : sequenceOptions(sequence, false),
        generated: row.generated,
        collation:
          row.collation_schema === null || row.collation_name === null
            ? null
            : `${quoteIdent(row.collation_schema)}.${quoteIdent(row.collation_name)}`,
      };
    }),
    constraints: constraints.rows.map((row) => {
      const kind = CONSTRAINT_KINDS[row.contype];
      if (kind === undefined) throw new Error(`unexpected constraint type ${row.contype}`);
      return {
        name: row.name,
        kind,
        definition: row.definition,
        columns: row.columns,
        ...(kind === 'foreign key' &&
          row.ref_schema !== null &&
          row.ref_table !== null && { references: { schema: row.ref_schema, table: row.ref_table } }),
      };
    }),
    indexes: indexes.rows,
    ownedSequences: sequences.rows
      .filter((row) => row.deptype === 'a')
      .map((row) => ({
        column: row.column,
        sequence: { schema: row.schema, table: row.name },
        options: sequenceOptions(row, true),
      })),
    partitionBy: relation.partition_by,
    partitions: relation.partition_by === null ? [] : await readPartitions(client, oid),
  };
}

/** A table's full definition, or undefined when the server has no such table (or a view, say). */
export async function readTableDefinition(
  db: pg.Pool | pg.ClientBase,
  table: TableRef,
): Promise<TableDefinition | undefined> {
  const read = (client: pg.ClientBase) => withQualifiedNames(client, () => readDefinition(client, table));
  return db instanceof pg.Pool ? withSession(db, read) : read(db);
}

// ---------------------------------------------------------------------------------------------
// Writing the DDL

/** The parts of pg_get_indexdef's text: CREATE [UNIQUE] INDEX name ON [ONLY] schema.table USING ... */
interface IndexText {
  unique: boolean;
  /** From USING on: what the index is, whatever its name and table. */
  body: string;
}

const IDENTIFIER = '(?:"(?:[^"]|"")*"|[^\\s".]+)';
const INDEX_TEXT = new RegExp(
  `^CREATE (UNIQUE )?INDEX ${IDENTIFIER} ON (?:ONLY )?${IDENTIFIER}\\.${IDENTIFIER} (USING [\\s\\S]*)$`,
);

function splitIndexDefinition(index: IndexDefinition): IndexText | undefined {
  const match = INDEX_TEXT.exec(index.definition);
  if (match?.[2] === undefined) return undefined;
  return { unique: match[1] !== undefined, body: match[2] };
}

/** What an index is, for comparing: its text without its name and its table's name. */
function indexKey(index: IndexDefinition): string {
  const text = splitIndexDefinition(index);
  return text === undefined ? index.definition : `${text.unique ? 'UNIQUE ' : ''}${text.body}`;
}

/** A constraint's meaning, for comparing: NOT VALID only says old rows were not checked. */
function constraintKey(constraint: ConstraintDefinition): string {
  return `${constraint.kind}: ${constraint.definition.replace(/ NOT VALID$/, '')}`;
}

function sameTable(a: TableRef, b: TableRef): boolean {
  return a.schema === b.schema && a.table === b.table;
}

function isMigrated(table: TableRef | undefined, migrated: readonly TableRef[]): boolean {
  return table !== undefined && migrated.some((candidate) => sameTable(candidate, table));
}

/**
 * One statement and how an executor knows it already took effect, so that running the statements
 * again (or after a crash) changes nothing.
 */
type Step =
  | { kind: 'schema'; sql: string; schema: string }
  | { kind: 'relation'; sql: string; relation: TableRef }
  | { kind: 'owned'; sql: string; sequence: TableRef; table: TableRef; column: string }
  // label: what completeTargetTable reports as created; null for a partition's share of its parent's.
  | { kind: 'constraint'; sql: string; table: TableRef; name: string; label: string | null }
  | { kind: 'validate'; sql: string; table: TableRef; name: string }
  | { kind: 'concurrent index'; sql: string; index: TableRef; label: string };

interface Plan {
  now: Step[];
  afterBackfill: Step[];
}

function columnSql(column: ColumnDefinition): string {
  const parts = [quoteIdent(column.name), column.type];
  if (column.collation !== null) parts.push(`COLLATE ${column.collation}`);
  if (column.generated !== null) parts.push(`GENERATED ALWAYS AS (${column.generated}) STORED`);
  if (column.identity !== null) {
    parts.push(
      `GENERATED ${column.identity === 'always' ? 'ALWAYS' : 'BY DEFAULT'} AS IDENTITY${
        column.identityOptions === null ? '' : ` (${column.identityOptions})`
      }`,
    );
  }
  if (column.default !== null) parts.push(`DEFAULT ${column.default}`);
  if (column.notNull) parts.push('NOT NULL');
  return parts.join(' ');
}

function leafPartitions(partitions: readonly PartitionDefinition[]): TableRef[] {
  return partitions.flatMap((partition) =>
    partition.partitionBy === null ? [partition.table] : leafPartitions(partition.partitions),
  );
}

function partitionSteps(parent: TableRef, partitions: readonly PartitionDefinition[]): Step[] {
  return partitions.flatMap((partition) => [
    {
      kind: 'relation' as const,
      relation: partition.table,
      sql: `CREATE TABLE IF NOT EXISTS ${quoteTable(partition.table)} PARTITION OF ${quoteTable(parent)} ${
        partition.bound
      }${partition.partitionBy === null ? '' : ` PARTITION BY ${partition.partitionBy}`}`,
    },
    ...partitionSteps(partition.table, partition.partitions),
  ]);
}

function allPartitions(partitions: readonly PartitionDefinition[]): PartitionDefinition[] {
  return partitions.flatMap((partition) => [partition, ...allPartitions(partition.partitions)]);
}

function plan(def: TableDefinition, migrated: readonly TableRef[], deferIndexes: boolean): Plan {
  const table = quoteTable(def.table);
  const partitioned = def.partitionBy !== null;
  const now: Step[] = [];
  const afterBackfill: Step[] = [];

  const schemas = [
    def.table.schema,
    ...def.ownedSequences.map((owned) => owned.sequence.schema),
    ...allPartitions(def.partitions).map((partition) => partition.table.schema),
  ];
  for (const schema of new Set(schemas)) {
    now.push({ kind: 'schema', schema, sql: `CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}` });
  }
  // A serial column's default names its sequence, which must exist before the table.
  for (const owned of def.ownedSequences) {
    now.push({
      kind: 'relation',
      relation: owned.sequence,
      sql: `CREATE SEQUENCE IF NOT EXISTS ${quoteTable(owned.sequence)} ${owned.options}`,
    });
  }
  now.push({
    kind: 'relation',
    relation: def.table,
    sql: `CREATE TABLE IF NOT EXISTS ${table} (${def.columns.map(columnSql).join(', ')})${
      partitioned ? ` PARTITION BY ${def.partitionBy}` : ''
    }`,
  });
  for (const owned of def.ownedSequences) {
    now.push({
      kind: 'owned',
      sequence: owned.sequence,
      table: def.table,
      column: owned.column,
      sql: `ALTER SEQUENCE ${quoteTable(owned.sequence)} OWNED BY ${table}.${quoteIdent(owned.column)}`,
    });
  }
  // Constraints and indexes go on the parent before the partitions exist: each partition created
  // afterwards gets its own copy, named by PostgreSQL.
  for (const constraint of def.constraints) {
    if (constraint.kind === 'foreign key') continue;
    now.push({
      kind: 'constraint',
      table: def.table,
      name: constraint.name,
      label: `constraint ${quoteIdent(constraint.name)}`,
      sql: `ALTER TABLE ${table} ADD CONSTRAINT ${quoteIdent(constraint.name)} ${constraint.definition}`,
    });
  }
  for (const index of def.indexes) {
    const text = splitIndexDefinition(index);
    if (text === undefined) {
      throw new Error(`cannot read the definition of index ${quoteIdent(index.name)}: ${index.definition}`);
    }
    const head = `CREATE ${text.unique ? 'UNIQUE ' : ''}INDEX`;
    const target = `${quoteIdent(index.name)} ON ${table} ${text.body}`;
    const ref = { schema: def.table.schema, table: index.name };
    // A unique index is a constraint in all but name: present while rows arrive, like the others.
    // PostgreSQL cannot build an index on a partitioned table concurrently; on the empty table now
    // it costs nothing.
    if (text.unique || !deferIndexes || partitioned) {
      now.push({ kind: 'relation', relation: ref, sql: `${head} IF NOT EXISTS ${target}` });
    } else {
      afterBackfill.push({
        kind: 'concurrent index',
        index: ref,
        label: `index ${quoteIdent(index.name)}`,
        sql: `${head} CONCURRENTLY IF NOT EXISTS ${target}`,
      });
    }
  }
  now.push(...partitionSteps(def.table, def.partitions));

  for (const constraint of def.constraints) {
    if (constraint.kind !== 'foreign key' || !isMigrated(constraint.references, migrated)) continue;
    const name = quoteIdent(constraint.name);
    // Old's own NOT VALID key may have rows that break it: new gets it as it is, unvalidated.
    const validated = !/ NOT VALID$/.test(constraint.definition);
    const add = (on: TableRef, notValid: boolean, label: string | null = `foreign key ${name}`): Step => ({
      kind: 'constraint',
      table: on,
      name: constraint.name,
      label,
      sql: `ALTER TABLE ${quoteTable(on)} ADD CONSTRAINT ${name} ${constraint.definition}${notValid ? ' NOT VALID' : ''}`,
    });
    const validate = (on: TableRef): Step => ({
      kind: 'validate',
      table: on,
      name: constraint.name,
      sql: `ALTER TABLE ${quoteTable(on)} VALIDATE CONSTRAINT ${name}`,
    });
    if (!validated) {
      afterBackfill.push(add(def.table, false));
    } else if (!partitioned) {
      // NOT VALID takes the table's lock only for a moment; VALIDATE then checks the rows while
      // writes go on.
      afterBackfill.push(add(def.table, true), validate(def.table));
    } else {
      // PostgreSQL before 18 refuses NOT VALID foreign keys on a partitioned table. Each leaf gets
      // its own, validated while writes go on; the parent's then adopts them without a scan.
      for (const leaf of leafPartitions(def.partitions)) {
        afterBackfill.push(add(leaf, true, null), validate(leaf));
      }
      afterBackfill.push(add(def.table, false));
    }
  }
  return { now, afterBackfill };
}

export interface TargetTableStatements {
  /** Before any row is copied, in one transaction. */
  now: string[];
  /** Once the backfill of this table and of the tables it references is done; not in a transaction. */
  afterBackfill: string[];
}

/**
 * The DDL that reproduces `def` on another server. `now` creates the table with its columns,
 * defaults, identity and generated columns, every constraint but foreign keys, unique indexes, the
 * other indexes unless `deferIndexes`, and every partition. `afterBackfill` builds the deferred
 * indexes concurrently and adds the foreign keys whose referenced table is among `migrated`
 * (NOT VALID, then validated): present during the copy, a foreign key would refuse child rows copied
 * before their parents. Foreign keys to tables not migrated are not created.
 */
export function createTableStatements(
  def: TableDefinition,
  migrated: readonly TableRef[],
  options: { deferIndexes?: boolean } = {},
): TargetTableStatements {
  const steps = plan(def, migrated, options.deferIndexes ?? false);
  return {
    now: steps.now.map((step) => step.sql),
    afterBackfill: steps.afterBackfill.map((step) => step.sql),
  };
}

// ---------------------------------------------------------------------------------------------
// Running the DDL

async function found(client: pg.ClientBase, sql: string, values: unknown[]): Promise<boolean> {
  return ((await client.query(sql, values)).rowCount ?? 0) > 0;
}

const RELATION_EXISTS = `SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                          WHERE n.nspname = $1 AND c.relname = $2`;
const CONSTRAINT_EXISTS = `SELECT 1 FROM pg_constraint k
                             JOIN pg_class c ON c.oid = k.conrelid
                             JOIN pg_namespace n ON n.oid = c.relnamespace
                            WHERE n.nspname = $1 AND c.relname = $2 AND k.conname = $3`;

const VALID_INDEX_EXISTS = `SELECT 1 FROM pg_class c
                              JOIN pg_namespace n ON n.oid = c.relnamespace
                              JOIN pg_index i ON i.indexrelid = c.oid
                             WHERE n.nspname = $1 AND c.relname = $2 AND i.indisvalid`;
const SEQUENCE_OWNED = `SELECT 1 FROM pg_depend d
                          JOIN pg_class s ON s.oid = d.objid
                          JOIN pg_namespace sn ON sn.oid = s.relnamespace
                          JOIN pg_class t ON t.oid = d.refobjid
                          JOIN pg_namespace tn ON tn.oid = t.relnamespace
                          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
                         WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass
                           AND d.deptype = 'a' AND sn.nspname = $1 AND s.relname = $2
                           AND tn.nspname = $3 AND t.relname = $4 AND a.attname = $5`;

/** True when the step took effect before (a schema or relation there, a constraint added or validated). */
async function done(client: pg.ClientBase, step: Step): Promise<boolean> {
  switch (step.kind) {
    case 'schema':
      return found(client, 'SELECT 1 FROM pg_namespace WHERE nspname = $1', [step.schema]);
    case 'relation':
      return found(client, RELATION_EXISTS, [step.relation.schema, step.relation.table]);
    case 'owned':
      return found(client, SEQUENCE_OWNED, [
        step.sequence.schema,
        step.sequence.table,
        step.table.schema,
        step.table.table,
        step.column,
      ]);
    case 'constraint':
      return found(client, CONSTRAINT_EXISTS, [step.table.schema, step.table.table, step.name]);
    case 'validate':
      return found(client, `${CONSTRAINT_EXISTS} AND k.convalidated`, [
        step.table.schema,
        step.table.table,
        step.name,
      ]);
    case 'concurrent index':
      return found(client, VALID_INDEX_EXISTS, [step.index.schema, step.index.table]);
  }
}

/** Advisory lock keys of one table's DDL work: apart from the chunk and sync locks (apply-locks.ts). */
function lockKeys(purpose: 'create' | 'complete', table: TableRef): string {
  return `hashtext(${quoteLiteral(`live_migrate.table_definition.${purpose}`)}), hashtext(${quoteLiteral(quoteTable(table))})`;
}

/**
 * Creates the table on the target as `createTableStatements(...).now` says, in one transaction:
 * either all of it is there afterwards or nothing changed. What exists already is left as it is, so
 * running it again is harmless. Types, enums, collations and extensions the table uses must exist on
 * the target; a failure is the database's error, thrown as it is.
 */
export async function createTargetTable(
  pool: pg.Pool,
  def: TableDefinition,
  migrated: readonly TableRef[],
  options: { deferIndexes?: boolean } = {},
): Promise<void> {
  const steps = plan(def, migrated, options.deferIndexes ?? false).now;
  await withTransaction(pool, async (client) => {
    // Two attempts at once would both find the table missing and collide in the catalog.
    await client.query(`SELECT pg_advisory_xact_lock(${lockKeys('create', def.table)})`);
    for (const step of steps) {
      if (!(await done(client, step))) await client.query(step.sql);
    }
  });
}

/** How long an ALTER TABLE waits for its lock on the target before it fails (and is retried). */
const LOCK_TIMEOUT = '5s';

/**
 * The `afterBackfill` part: builds the deferred indexes concurrently and adds the foreign keys to
 * migrated tables, then validates them. Run it once this table and the tables it references are
 * backfilled. Each step checks first whether it took effect already, so a second run, or a run after
 * a crash half way, finishes the work (an index left invalid by a crashed build is dropped and built
 * again). Returns what this run created. Another session doing the same for the same table makes it
 * throw rather than wait.
 */
export async function completeTargetTable(
  pool: pg.Pool,
  def: TableDefinition,
  migrated: readonly TableRef[],
  options: {
    /**
     * Runs inside each constraint change's transaction, before it commits: a caller that watches the
     * table's definition (the migration's registry) records the change as it becomes visible.
     */
    withinEachChange?: (client: pg.ClientBase) => Promise<void>;
  } = {},
): Promise<{ created: string[] }> {
  const steps = plan(def, migrated, true).afterBackfill;
  const created: string[] = [];
  if (steps.length === 0) return { created };
  await withSession(pool, async (client) => {
    // A session lock, tried rather than waited for: a concurrent index build waits for every older
    // snapshot, a blocked lock request's included, which could deadlock.
    const locked = await client.query<{ locked: boolean }>(
      `SELECT pg_try_advisory_lock(${lockKeys('complete', def.table)}) AS locked`,
    );
    if (locked.rows[0]?.locked !== true) {
      throw new Error(
        `another session is adding the indexes and foreign keys of ${quoteTable(def.table)} on this server; try again once it has finished`,
      );
    }
    for (const step of steps) {
      if (await done(client, step)) continue;
      if (step.kind === 'concurrent index') {
        // An index a crashed build left behind is there but invalid: IF NOT EXISTS would keep it so.
        await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${quoteTable(step.index)}`);
        await client.query(step.sql);
        created.push(step.label);
      } else {
        // Each ALTER on its own and with a lock timeout: ADD CONSTRAINT holds a lock that stops
        // writes to both tables, so it must not queue behind a long transaction with writers behind it.
        await client.query('BEGIN');
        await client.query(`SET LOCAL lock_timeout = '${LOCK_TIMEOUT}'`);
        await client.query(step.sql);
        await options.withinEachChange?.(client);
        await client.query('COMMIT');
        if (step.kind === 'constraint' && step.label !== null) created.push(step.label);
      }
    }
    await client.query(`SELECT pg_advisory_unlock(${lockKeys('complete', def.table)})`);
  });
  return { created };
}

// ---------------------------------------------------------------------------------------------
// Comparing

export interface DefinitionDifference {
  /** What differs: a column, the primary key, a constraint, an index, the partitioning. */
  subject: string;
  /** What differs and, where useful, what to do; never row data. */
  problem: string;
  /** refuse: a sync would fail or the sides would disagree later; warn: slower or different, not wrong. */
  severity: 'refuse' | 'warn';
}

export interface CompareOptions {
  migrated: readonly TableRef[];
  /** The foreign keys to migrated tables will be created on new after the backfill (createTables). */
  foreignKeysLater?: boolean;
  /** The non-unique indexes will be built on new after the backfill (deferIndexes). */
  indexesLater?: boolean;
}

const KIND_WORD: Record<ConstraintKind, string> = {
  'primary key': 'primary key',
  unique: 'UNIQUE constraint',
  check: 'CHECK constraint',
  exclusion: 'EXCLUDE constraint',
  'foreign key': 'foreign key',
};

/** Pairs items of two lists whose keys are equal; returns those left over on each side. */
function unmatched<T>(
  olds: readonly T[],
  news: readonly T[],
  key: (item: T) => string,
): { old: T[]; new: T[] } {
  const remaining = [...news];
  const oldOnly: T[] = [];
  for (const item of olds) {
    const at = remaining.findIndex((candidate) => key(candidate) === key(item));
    if (at === -1) oldOnly.push(item);
    else remaining.splice(at, 1);
  }
  return { old: oldOnly, new: remaining };
}

function compareColumns(
  oldDef: TableDefinition,
  newDef: TableDefinition,
  add: (difference: DefinitionDifference) => void,
): void {
  const keyColumns = new Set(oldDef.constraints.find((c) => c.kind === 'primary key')?.columns ?? []);
  const newColumns = new Map(newDef.columns.map((column) => [column.name, column]));
  for (const column of oldDef.columns) {
    const subject = `column ${quoteIdent(column.name)}`;
    const refuse = (problem: string) => add({ subject, problem, severity: 'refuse' });
    const warn = (problem: string) => add({ subject, problem, severity: 'warn' });
    const other = newColumns.get(column.name);
    if (other === undefined) {
      refuse(`missing on new (old has ${column.type})`);
      continue;
    }
    newColumns.delete(column.name);
    if (other.type !== column.type) refuse(`type ${column.type} on old, ${other.type} on new`);
    if (column.generated !== null || other.generated !== null) {
      if (other.generated === null) {
        refuse(`generated on old (${column.generated}), a plain column on new`);
      } else if (column.generated === null) {
        refuse(`generated on new only (${other.generated})`);
      } else if (column.generated !== other.generated) {
        refuse(`generated as ${column.generated} on old, as ${other.generated} on new`);
      }
    }
    if (column.notNull && !other.notNull) {
      refuse(
        'NOT NULL on old but nullable on new: once new takes writes it would accept a NULL that old refuses, and its sync back to old would fail',
      );
    } else if (other.notNull && !column.notNull) {
      refuse('NOT NULL on new but nullable on old: a NULL on old cannot be copied to new');
    }
    if (column.generated === null && other.generated === null) compareDefaults(column, other, refuse, warn);
    if (column.collation !== other.collation) {
      const problem = `collation ${column.collation ?? 'of its type'} on old, ${other.collation ?? 'of its type'} on new`;
      if (keyColumns.has(column.name)) {
        refuse(`${problem}: keys would sort differently on each side, and key ranges would not match`);
      } else {
        warn(`${problem}: comparisons and sorting by it may differ`);
      }
    }
  }
  for (const column of newColumns.values()) {
    add({
      subject: `column ${quoteIdent(column.name)}`,
      problem: `only on new (${column.type}${column.notNull ? ', NOT NULL' : ''}): old rows have no value for it; drop it on new or add it on old`,
      severity: 'refuse',
    });
  }
}

function describeGenerator(column: ColumnDefinition): string | undefined {
  if (column.identity !== null) return `identity (GENERATED ${column.identity.toUpperCase()})`;
  if (column.default !== null) return `default ${column.default}`;
  return undefined;
}

function compareDefaults(
  column: ColumnDefinition,
  other: ColumnDefinition,
  refuse: (problem: string) => void,
  warn: (problem: string) => void,
): void {
  const onOld = describeGenerator(column);
  const onNew = describeGenerator(other);
  if (onOld === onNew) return;
  if (onOld !== undefined && onNew === undefined) {
    refuse(
      `${onOld} on old, none on new: once new takes writes, an insert that leaves the column out would ${
        column.notNull ? 'fail' : 'store NULL'
      } there; add it on new`,
    );
  } else if (onOld === undefined) {
    warn(`${onNew} on new only`);
  } else if (column.identity !== null && other.identity !== null) {
    warn(
      `${onOld} on old, ${onNew} on new: an insert that gives the column a value is refused where it is ALWAYS`,
    );
  } else {
    warn(`${onOld} on old, ${onNew} on new`);
  }
}

function compareConstraints(
  oldDef: TableDefinition,
  newDef: TableDefinition,
  options: CompareOptions,
  add: (difference: DefinitionDifference) => void,
): void {
  const primaryKey = (def: TableDefinition) => def.constraints.find((c) => c.kind === 'primary key');
  const oldKey = primaryKey(oldDef);
  const newKey = primaryKey(newDef);
  if ((oldKey && constraintKey(oldKey)) !== (newKey && constraintKey(newKey))) {
    add({
      subject: 'primary key',
      problem: `${oldKey?.definition ?? 'none'} on old, ${newKey?.definition ?? 'none'} on new: rows are matched by it`,
      severity: 'refuse',
    });
  }
  const others = (def: TableDefinition) => def.constraints.filter((c) => c.kind !== 'primary key');
  const left = unmatched(others(oldDef), others(newDef), constraintKey);
  // The same name and kind on both sides with different texts is one difference, not two.
  const changed = left.old.flatMap((a) => {
    const b = left.new.find((candidate) => candidate.name === a.name && candidate.kind === a.kind);
    return b === undefined ? [] : [[a, b] as const];
  });
  for (const [a, b] of changed) {
    add({
      subject: `constraint ${quoteIdent(a.name)}`,
      problem: `${KIND_WORD[a.kind]} ${a.definition} on old, ${b.definition} on new: the sides would accept different rows; make new's match old's`,
      severity: 'refuse',
    });
  }
  const paired = new Set<ConstraintDefinition>(changed.flat());
  for (const constraint of left.old) {
    if (!paired.has(constraint)) add(oldOnlyConstraint(constraint, options));
  }
  for (const constraint of left.new) {
    if (!paired.has(constraint)) add(newOnlyConstraint(constraint));
  }
}

function oldOnlyConstraint(constraint: ConstraintDefinition, options: CompareOptions): DefinitionDifference {
  const subject = `constraint ${quoteIdent(constraint.name)}`;
  const what = `${KIND_WORD[constraint.kind]} ${constraint.definition} on old only`;
  if (constraint.kind !== 'foreign key') {
    return {
      subject,
      problem: `${what}: new would accept rows that old refuses, and their sync back to old would fail; add it on new`,
      severity: 'refuse',
    };
  }
  const referenced = constraint.references;
  if (!isMigrated(referenced, options.migrated)) {
    return {
      subject,
      problem: `${what}; it references ${referenced === undefined ? 'a table' : quoteTable(referenced)}, which this migration does not move: create that table and the foreign key on new, or add the table to the migration`,
      severity: 'refuse',
    };
  }
  if (options.foreignKeysLater === true) {
    return { subject, problem: `${what}; it is added on new after the backfill`, severity: 'warn' };
  }
  return {
    subject,
    problem: `${what}: new would accept rows whose parent is missing; add it on new once the backfill is done`,
    severity: 'refuse',
  };
}

function newOnlyConstraint(constraint: ConstraintDefinition): DefinitionDifference {
  const subject = `constraint ${quoteIdent(constraint.name)}`;
  const what = `${KIND_WORD[constraint.kind]} ${constraint.definition} on new only`;
  if (constraint.kind === 'foreign key') {
    return {
      subject,
      problem: `${what}: a child row copied or synced before its parent would be refused; drop it on new (the migration adds foreign keys after the backfill)`,
      severity: 'refuse',
    };
  }
  return {
    subject,
    problem: `${what}: rows that old accepts and new refuses could not be copied or synced; drop it on new or add it on old`,
    severity: 'refuse',
  };
}

function compareIndexes(
  oldDef: TableDefinition,
  newDef: TableDefinition,
  options: CompareOptions,
  add: (difference: DefinitionDifference) => void,
): void {
  const left = unmatched(oldDef.indexes, newDef.indexes, indexKey);
  const changed = left.old.flatMap((a) => {
    const b = left.new.find((candidate) => candidate.name === a.name);
    return b === undefined ? [] : [[a, b] as const];
  });
  for (const [a, b] of changed) {
    add({
      subject: `index ${quoteIdent(a.name)}`,
      problem: `${a.definition} on old, ${b.definition} on new${
        a.unique || b.unique ? ': the sides would refuse different duplicates' : ''
      }`,
      severity: a.unique || b.unique ? 'refuse' : 'warn',
    });
  }
  const paired = new Set<IndexDefinition>(changed.flat());
  for (const index of left.old) {
    if (paired.has(index)) continue;
    const subject = `index ${quoteIdent(index.name)}`;
    if (index.unique) {
      add({
        subject,
        problem: `${index.definition} on old only: new would accept duplicates that old refuses, and their sync back to old would fail; create it on new`,
        severity: 'refuse',
      });
    } else {
      add({
        subject,
        problem: `${index.definition} on old only${
          options.indexesLater === true
            ? '; it is built on new after the backfill'
            : ': reads that use it on old may be slow on new'
        }`,
        severity: 'warn',
      });
    }
  }
  for (const index of left.new) {
    if (paired.has(index)) continue;
    add({
      subject: `index ${quoteIdent(index.name)}`,
      problem: index.unique
        ? `${index.definition} on new only: rows that old accepts and new refuses could not be copied or synced; drop it on new or create it on old`
        : `${index.definition} on new only`,
      severity: index.unique ? 'refuse' : 'warn',
    });
  }
}

/** Each partition as the chain of bounds from the table down, so names may differ between sides. */
function partitionPaths(partitions: readonly PartitionDefinition[], prefix = ''): string[] {
  return partitions.flatMap((partition) => {
    const path = `${prefix}${partition.bound}`;
    return [
      `${path}${partition.partitionBy === null ? '' : ` PARTITION BY ${partition.partitionBy}`}`,
      ...partitionPaths(partition.partitions, `${path} / `),
    ];
  });
}

function comparePartitions(
  oldDef: TableDefinition,
  newDef: TableDefinition,
  add: (difference: DefinitionDifference) => void,
): void {
  // New may hold the table plain (or distributed by Citus) where old partitions it: not a difference.
  if (oldDef.partitionBy === null || newDef.partitionBy === null) return;
  if (oldDef.partitionBy !== newDef.partitionBy) {
    add({
      subject: 'partitioning',
      problem: `PARTITION BY ${oldDef.partitionBy} on old, PARTITION BY ${newDef.partitionBy} on new`,
      severity: 'warn',
    });
  }
  const left = unmatched(partitionPaths(oldDef.partitions), partitionPaths(newDef.partitions), (p) => p);
  for (const path of left.old) {
    add({
      subject: `partition ${path}`,
      problem: 'on old only: its rows need a partition (or a default partition) on new to land in',
      severity: 'warn',
    });
  }
  for (const path of left.new) {
    add({ subject: `partition ${path}`, problem: 'on new only', severity: 'warn' });
  }
}

/**
 * What differs between old's and new's definition of a table. Constraints and indexes are matched
 * by what they are, not by name (names may differ between servers). Column order may differ too.
 */
export function compareDefinitions(
  oldDef: TableDefinition,
  newDef: TableDefinition,
  options: CompareOptions,
): DefinitionDifference[] {
  const differences: DefinitionDifference[] = [];
  const add = (difference: DefinitionDifference) => differences.push(difference);
  compareColumns(oldDef, newDef, add);
  compareConstraints(oldDef, newDef, options, add);
  compareIndexes(oldDef, newDef, options, add);
  comparePartitions(oldDef, newDef, add);
  return differences;
}

/** The differences as one message line, refusals first. */
export function describeDefinitionDifferences(
  table: TableRef,
  differences: readonly DefinitionDifference[],
): string {
  const ordered = [
    ...differences.filter((d) => d.severity === 'refuse'),
    ...differences.filter((d) => d.severity === 'warn'),
  ];
  return `table ${quoteTable(table)} differs between old and new: ${ordered
    .map((d) => `${d.subject}: ${d.problem}${d.severity === 'warn' ? ' (warning)' : ''}`)
    .join('; ')}`;
}
