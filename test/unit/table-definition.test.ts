// The DDL written from a table's definition, and the comparison of old's and new's definitions, on
// hand-built definitions: what is created before the backfill and what after, in which order and
// quoted how; and which difference refuses the migration and which only warns.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { TableRef } from '../../model/tables';
import {
  compareDefinitions,
  createTableStatements,
  describeDefinitionDifferences,
  type ColumnDefinition,
  type CompareOptions,
  type ConstraintDefinition,
  type IndexDefinition,
  type TableDefinition,
} from '../../db/table-definition';

const lines: TableRef = { schema: 'public', table: 'Order Lines' };
const customers: TableRef = { schema: 'public', table: 'customers' };
const events: TableRef = { schema: 'public', table: 'events' };

function column(name: string, type: string, extra: Partial<ColumnDefinition> = {}): ColumnDefinition {
  return {
    name,
    type,
    notNull: false,
    default: null,
    identity: null,
    identityOptions: null,
    generated: null,
    collation: null,
    ...extra,
  };
}

const primaryKey: ConstraintDefinition = {
  name: 'Order Lines_pkey',
  kind: 'primary key',
  definition: 'PRIMARY KEY (id)',
  columns: ['id'],
};
const uniqueHandle: ConstraintDefinition = {
  name: 'Order Lines_handle_key',
  kind: 'unique',
  definition: 'UNIQUE (handle)',
  columns: ['handle'],
};
const positiveQuantity: ConstraintDefinition = {
  name: 'Order Lines_quantity_check',
  kind: 'check',
  definition: 'CHECK ((quantity > 0))',
  columns: ['quantity'],
};
const noOverlap: ConstraintDefinition = {
  name: 'no_overlap',
  kind: 'exclusion',
  definition: 'EXCLUDE USING gist (booked WITH &&)',
  columns: ['booked'],
};
const customerKey: ConstraintDefinition = {
  name: 'Order Lines_customer_id_fkey',
  kind: 'foreign key',
  definition: 'FOREIGN KEY (customer_id) REFERENCES public.customers(id)',
  columns: ['customer_id'],
  references: customers,
};
const uniqueLowerSelect: IndexDefinition = {
  name: 'order_lines_lower_select',
  unique: true,
  definition:
    'CREATE UNIQUE INDEX order_lines_lower_select ON public."Order Lines" USING btree (lower("select")) WHERE (status <> \'cancelled\'::text)',
};
const byCustomer: IndexDefinition = {
  name: 'order_lines_customer',
  unique: false,
  definition:
    'CREATE INDEX order_lines_customer ON public."Order Lines" USING btree (customer_id, created_at DESC)',
};

/** "Order Lines" as old has it: the test's reference definition. */
function orderLines(extra: Partial<TableDefinition> = {}): TableDefinition {
  return {
    table: lines,
    columns: [
      column('id', 'bigint', {
        notNull: true,
        identity: 'by default',
        identityOptions:
          'INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1 NO CYCLE',
      }),
      column('line_no', 'integer', {
        notNull: true,
        default: `nextval('public."Order Lines_line_no_seq"'::regclass)`,
      }),
      column('customer_id', 'bigint', { notNull: true }),
      column('handle', 'text', { notNull: true, collation: '"pg_catalog"."C"' }),
      column('select', 'text', { default: "'x'::text" }),
      column('status', 'text', { notNull: true, default: "'new'::text" }),
      column('created_at', 'timestamp with time zone', { notNull: true, default: 'now()' }),
      column('quantity', 'integer', { notNull: true }),
      column('unit_price', 'numeric(12,2)', { notNull: true, default: '0' }),
      column('total', 'numeric(14,2)', { generated: '((quantity)::numeric * unit_price)' }),
      column('booked', 'tstzrange'),
    ],
    constraints: [primaryKey, uniqueHandle, noOverlap, positiveQuantity, customerKey],
    indexes: [byCustomer, uniqueLowerSelect],
    ownedSequences: [
      {
        column: 'line_no',
        sequence: { schema: 'public', table: 'Order Lines_line_no_seq' },
        options: 'AS integer INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1 NO CYCLE',
      },
    ],
    partitionBy: null,
    partitions: [],
    ...extra,
  };
}

/** A range-partitioned table with a list sub-partition and default partitions at both levels. */
function eventsTable(extra: Partial<TableDefinition> = {}): TableDefinition {
  return {
    table: events,
    columns: [
      column('id', 'bigint', { notNull: true }),
      column('created_at', 'date', { notNull: true }),
      column('region', 'text', { notNull: true }),
      column('customer_id', 'bigint'),
    ],
    constraints: [
      {
        name: 'events_pkey',
        kind: 'primary key',
        definition: 'PRIMARY KEY (id, created_at, region)',
        columns: ['id', 'created_at', 'region'],
      },
      {
        name: 'events_customer_id_fkey',
        kind: 'foreign key',
        definition: 'FOREIGN KEY (customer_id) REFERENCES public.customers(id)',
        columns: ['customer_id'],
        references: customers,
      },
    ],
    indexes: [
      {
        name: 'events_region',
        unique: false,
        definition: 'CREATE INDEX events_region ON ONLY public.events USING btree (region, created_at)',
      },
    ],
    ownedSequences: [],
    partitionBy: 'RANGE (created_at)',
    partitions: [
      {
        table: { schema: 'public', table: 'events_2024' },
        bound: "FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
        partitionBy: 'LIST (region)',
        partitions: [
          {
            table: { schema: 'public', table: 'events_2024_eu' },
            bound: "FOR VALUES IN ('eu', 'uk')",
            partitionBy: null,
            partitions: [],
          },
          {
            table: { schema: 'public', table: 'events_2024_other' },
            bound: 'DEFAULT',
            partitionBy: null,
            partitions: [],
          },
        ],
      },
      {
        table: { schema: 'archive', table: 'events_default' },
        bound: 'DEFAULT',
        partitionBy: null,
        partitions: [],
      },
    ],
    ...extra,
  };
}

const everything: CompareOptions = { migrated: [lines, customers, events] };

/** The differences as "subject severity" lines, easy to compare whole. */
function found(oldDef: TableDefinition, newDef: TableDefinition, options = everything): string[] {
  return compareDefinitions(oldDef, newDef, options).map((d) => `${d.subject} ${d.severity}`);
}

function problemOf(oldDef: TableDefinition, newDef: TableDefinition, options = everything): string {
  const differences = compareDefinitions(oldDef, newDef, options);
  assert.equal(differences.length, 1, JSON.stringify(differences));
  return differences[0]!.problem;
}

function withColumn(def: TableDefinition, name: string, change: Partial<ColumnDefinition>): TableDefinition {
  return {
    ...def,
    columns: def.columns.map((c) => (c.name === name ? { ...c, ...change } : c)),
  };
}

function without<T extends { name: string }>(items: readonly T[], name: string): T[] {
  return items.filter((item) => item.name !== name);
}

describe('target table DDL', () => {
  it('creates sequence, table, ownership, constraints and indexes before the backfill, in that order, quoted', () => {
    const { now, afterBackfill } = createTableStatements(orderLines(), [lines, customers]);
    assert.deepEqual(now, [
      'CREATE SCHEMA IF NOT EXISTS "public"',
      'CREATE SEQUENCE IF NOT EXISTS "public"."Order Lines_line_no_seq" AS integer INCREMENT BY 1 MINVALUE 1 MAXVALUE 2147483647 START WITH 1 CACHE 1 NO CYCLE',
      'CREATE TABLE IF NOT EXISTS "public"."Order Lines" (' +
        [
          '"id" bigint GENERATED BY DEFAULT AS IDENTITY (INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1 NO CYCLE) NOT NULL',
          `"line_no" integer DEFAULT nextval('public."Order Lines_line_no_seq"'::regclass) NOT NULL`,
          '"customer_id" bigint NOT NULL',
          '"handle" text COLLATE "pg_catalog"."C" NOT NULL',
          `"select" text DEFAULT 'x'::text`,
          `"status" text DEFAULT 'new'::text NOT NULL`,
          '"created_at" timestamp with time zone DEFAULT now() NOT NULL',
          '"quantity" integer NOT NULL',
          '"unit_price" numeric(12,2) DEFAULT 0 NOT NULL',
          '"total" numeric(14,2) GENERATED ALWAYS AS (((quantity)::numeric * unit_price)) STORED',
          '"booked" tstzrange',
        ].join(', ') +
        ')',
      'ALTER SEQUENCE "public"."Order Lines_line_no_seq" OWNED BY "public"."Order Lines"."line_no"',
      'ALTER TABLE "public"."Order Lines" ADD CONSTRAINT "Order Lines_pkey" PRIMARY KEY (id)',
      'ALTER TABLE "public"."Order Lines" ADD CONSTRAINT "Order Lines_handle_key" UNIQUE (handle)',
      'ALTER TABLE "public"."Order Lines" ADD CONSTRAINT "no_overlap" EXCLUDE USING gist (booked WITH &&)',
      'ALTER TABLE "public"."Order Lines" ADD CONSTRAINT "Order Lines_quantity_check" CHECK ((quantity > 0))',
      'CREATE INDEX IF NOT EXISTS "order_lines_customer" ON "public"."Order Lines" USING btree (customer_id, created_at DESC)',
      `CREATE UNIQUE INDEX IF NOT EXISTS "order_lines_lower_select" ON "public"."Order Lines" USING btree (lower("select")) WHERE (status <> 'cancelled'::text)`,
    ]);
    // Present during the copy, the foreign key would refuse child rows copied before their parents.
    assert.deepEqual(afterBackfill, [
      'ALTER TABLE "public"."Order Lines" ADD CONSTRAINT "Order Lines_customer_id_fkey" FOREIGN KEY (customer_id) REFERENCES public.customers(id) NOT VALID',
      'ALTER TABLE "public"."Order Lines" VALIDATE CONSTRAINT "Order Lines_customer_id_fkey"',
    ]);
  });

  it('defers non-unique indexes to a concurrent build after the backfill when asked; unique ones stay', () => {
    const { now, afterBackfill } = createTableStatements(orderLines(), [lines, customers], {
      deferIndexes: true,
    });
    assert.ok(
      now.some((sql) => sql.startsWith('CREATE UNIQUE INDEX IF NOT EXISTS "order_lines_lower_select"')),
    );
    assert.ok(!now.some((sql) => sql.includes('"order_lines_customer"')));
    assert.equal(
      afterBackfill[0],
      'CREATE INDEX CONCURRENTLY IF NOT EXISTS "order_lines_customer" ON "public"."Order Lines" USING btree (customer_id, created_at DESC)',
    );
  });

  it('never creates a foreign key to a table the migration does not move', () => {
    const { now, afterBackfill } = createTableStatements(orderLines(), [lines]);
    assert.ok(![...now, ...afterBackfill].some((sql) => sql.includes('FOREIGN KEY')));
  });

  it("keeps old's NOT VALID foreign key unvalidated: old may hold rows that break it", () => {
    const notValid = { ...customerKey, definition: `${customerKey.definition} NOT VALID` };
    const def = orderLines({ constraints: [primaryKey, notValid] });
    assert.deepEqual(createTableStatements(def, [lines, customers]).afterBackfill, [
      'ALTER TABLE "public"."Order Lines" ADD CONSTRAINT "Order Lines_customer_id_fkey" FOREIGN KEY (customer_id) REFERENCES public.customers(id) NOT VALID',
    ]);
  });

  it('creates every partition after the parent, sub-partitions after theirs, each in its own schema', () => {
    const { now } = createTableStatements(eventsTable(), [events, customers], { deferIndexes: true });
    assert.deepEqual(now, [
      'CREATE SCHEMA IF NOT EXISTS "public"',
      'CREATE SCHEMA IF NOT EXISTS "archive"',
      'CREATE TABLE IF NOT EXISTS "public"."events" ("id" bigint NOT NULL, "created_at" date NOT NULL, "region" text NOT NULL, "customer_id" bigint) PARTITION BY RANGE (created_at)',
      'ALTER TABLE "public"."events" ADD CONSTRAINT "events_pkey" PRIMARY KEY (id, created_at, region)',
      // Not ON ONLY: the index must reach every partition. Not deferred: PostgreSQL cannot build an
      // index on a partitioned table concurrently.
      'CREATE INDEX IF NOT EXISTS "events_region" ON "public"."events" USING btree (region, created_at)',
      `CREATE TABLE IF NOT EXISTS "public"."events_2024" PARTITION OF "public"."events" FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY LIST (region)`,
      `CREATE TABLE IF NOT EXISTS "public"."events_2024_eu" PARTITION OF "public"."events_2024" FOR VALUES IN ('eu', 'uk')`,
      'CREATE TABLE IF NOT EXISTS "public"."events_2024_other" PARTITION OF "public"."events_2024" DEFAULT',
      'CREATE TABLE IF NOT EXISTS "archive"."events_default" PARTITION OF "public"."events" DEFAULT',
    ]);
  });

  it("adds a partitioned table's foreign key to each leaf unvalidated, validates it there, then on the parent", () => {
    // PostgreSQL 17 refuses NOT VALID on a partitioned table; the parent adopts the leaves' keys.
    const add = (on: string, notValid: boolean) =>
      `ALTER TABLE ${on} ADD CONSTRAINT "events_customer_id_fkey" FOREIGN KEY (customer_id) REFERENCES public.customers(id)${notValid ? ' NOT VALID' : ''}`;
    const validate = (on: string) => `ALTER TABLE ${on} VALIDATE CONSTRAINT "events_customer_id_fkey"`;
    assert.deepEqual(createTableStatements(eventsTable(), [events, customers]).afterBackfill, [
      add('"public"."events_2024_eu"', true),
      validate('"public"."events_2024_eu"'),
      add('"public"."events_2024_other"', true),
      validate('"public"."events_2024_other"'),
      add('"archive"."events_default"', true),
      validate('"archive"."events_default"'),
      add('"public"."events"', false),
    ]);
  });
});

describe('definition comparison', () => {
  it('finds nothing between equal definitions, whatever the names of constraints, indexes and partitions', () => {
    const renamed = orderLines({
      columns: [...orderLines().columns].reverse(),
      constraints: orderLines().constraints.map((c) => ({ ...c, name: `${c.name}_on_new` })),
      indexes: orderLines().indexes.map((index) => ({
        ...index,
        name: `${index.name}_2`,
        definition: index.definition.replace(index.name, `${index.name}_2`),
      })),
    });
    assert.deepEqual(compareDefinitions(orderLines(), renamed, everything), []);
    const partitionsRenamed = eventsTable({
      partitions: eventsTable().partitions.map((p) => ({
        ...p,
        table: { ...p.table, table: `${p.table.table}_x` },
      })),
    });
    assert.deepEqual(compareDefinitions(eventsTable(), partitionsRenamed, everything), []);
  });

  it('refuses a column missing on new, one only on new, and a changed type', () => {
    const changed = orderLines({
      columns: [
        ...without(orderLines().columns, 'booked').map((c) =>
          c.name === 'quantity' ? { ...c, type: 'bigint' } : c,
        ),
        column('extra', 'text', { notNull: true }),
      ],
    });
    assert.deepEqual(found(orderLines(), changed), [
      'column "quantity" refuse',
      'column "booked" refuse',
      'column "extra" refuse',
    ]);
    const [quantity, booked, extra] = compareDefinitions(orderLines(), changed, everything);
    assert.equal(quantity?.problem, 'type integer on old, bigint on new');
    assert.equal(booked?.problem, 'missing on new (old has tstzrange)');
    assert.match(extra?.problem ?? '', /^only on new \(text, NOT NULL\)/);
  });

  it('refuses a generated column that is plain on the other side or generated differently', () => {
    assert.match(
      problemOf(orderLines(), withColumn(orderLines(), 'total', { generated: null })),
      /generated on old .*, a plain column on new/,
    );
    assert.match(
      problemOf(withColumn(orderLines(), 'total', { generated: null }), orderLines()),
      /generated on new only/,
    );
    assert.deepEqual(
      found(orderLines(), withColumn(orderLines(), 'total', { generated: '(quantity * 2)' })),
      ['column "total" refuse'],
    );
  });

  it('refuses NOT NULL on one side only, in either direction', () => {
    // After the switch new is authoritative: old must accept what new accepted, and the other way.
    assert.match(
      problemOf(orderLines(), withColumn(orderLines(), 'quantity', { notNull: false })),
      /NOT NULL on old but nullable on new/,
    );
    assert.match(
      problemOf(orderLines(), withColumn(orderLines(), 'booked', { notNull: true })),
      /NOT NULL on new but nullable on old/,
    );
  });

  it('refuses a different primary key', () => {
    const other = orderLines({
      constraints: [
        { ...primaryKey, definition: 'PRIMARY KEY (id, handle)', columns: ['id', 'handle'] },
        ...orderLines().constraints.slice(1),
      ],
    });
    assert.deepEqual(found(orderLines(), other), ['primary key refuse']);
    assert.deepEqual(found(orderLines(), orderLines({ constraints: orderLines().constraints.slice(1) })), [
      'primary key refuse',
    ]);
  });

  it('refuses a UNIQUE constraint or unique index on one side only, in either direction', () => {
    const noUnique = orderLines({ constraints: without(orderLines().constraints, uniqueHandle.name) });
    assert.match(
      problemOf(orderLines(), noUnique),
      /UNIQUE constraint UNIQUE \(handle\) on old only: new would accept/,
    );
    assert.match(problemOf(noUnique, orderLines()), /UNIQUE constraint UNIQUE \(handle\) on new only/);
    const noUniqueIndex = orderLines({ indexes: [byCustomer] });
    assert.deepEqual(found(orderLines(), noUniqueIndex), ['index "order_lines_lower_select" refuse']);
    assert.deepEqual(found(noUniqueIndex, orderLines()), ['index "order_lines_lower_select" refuse']);
  });

  it('refuses a CHECK or EXCLUDE constraint on one side only, and one that differs', () => {
    const noCheck = orderLines({ constraints: without(orderLines().constraints, positiveQuantity.name) });
    assert.deepEqual(found(orderLines(), noCheck), ['constraint "Order Lines_quantity_check" refuse']);
    assert.deepEqual(found(noCheck, orderLines()), ['constraint "Order Lines_quantity_check" refuse']);
    const noExclusion = orderLines({ constraints: without(orderLines().constraints, noOverlap.name) });
    assert.deepEqual(found(orderLines(), noExclusion), ['constraint "no_overlap" refuse']);
    const looser = orderLines({
      constraints: orderLines().constraints.map((c) =>
        c === positiveQuantity ? { ...c, definition: 'CHECK ((quantity >= 0))' } : c,
      ),
    });
    // One difference, not an "on old only" plus an "on new only".
    assert.equal(
      problemOf(orderLines(), looser),
      "CHECK constraint CHECK ((quantity > 0)) on old, CHECK ((quantity >= 0)) on new: the sides would accept different rows; make new's match old's",
    );
  });

  it('refuses a default or identity on old that new lacks', () => {
    // After the switch an insert that leaves the column out would fail (NOT NULL) or store NULL.
    assert.match(
      problemOf(orderLines(), withColumn(orderLines(), 'status', { default: null })),
      /default 'new'::text on old, none on new: .* would fail there/,
    );
    assert.match(
      problemOf(orderLines(), withColumn(orderLines(), 'select', { default: null })),
      /would store NULL there/,
    );
    assert.match(
      problemOf(orderLines(), withColumn(orderLines(), 'id', { identity: null, identityOptions: null })),
      /identity \(GENERATED BY DEFAULT\) on old, none on new/,
    );
  });

  it('warns of a default on new only, of differing defaults, and of serial on one side and identity on the other', () => {
    assert.deepEqual(found(withColumn(orderLines(), 'select', { default: null }), orderLines()), [
      'column "select" warn',
    ]);
    assert.deepEqual(found(orderLines(), withColumn(orderLines(), 'status', { default: "'open'::text" })), [
      'column "status" warn',
    ]);
    const identityOnNew = withColumn(orderLines(), 'line_no', {
      default: null,
      identity: 'by default',
    });
    assert.deepEqual(found(orderLines(), identityOnNew), ['column "line_no" warn']);
    assert.deepEqual(found(identityOnNew, orderLines()), ['column "line_no" warn']);
    // Identity options are not compared: sequences on new are moved past old's at the switch anyway.
    assert.deepEqual(
      found(orderLines(), withColumn(orderLines(), 'id', { identityOptions: 'INCREMENT BY 5' })),
      [],
    );
  });

  it("refuses a key column's differing collation; warns of another column's", () => {
    const keyed = orderLines({
      constraints: [{ ...primaryKey, definition: 'PRIMARY KEY (handle)', columns: ['handle'] }],
    });
    assert.deepEqual(found(keyed, withColumn(keyed, 'handle', { collation: null })), [
      'column "handle" refuse',
    ]);
    assert.deepEqual(found(orderLines(), withColumn(orderLines(), 'handle', { collation: null })), [
      'column "handle" warn',
    ]);
  });

  it('refuses a foreign key on new only, and one on old only unless it is added after the backfill', () => {
    const noKey = orderLines({ constraints: without(orderLines().constraints, customerKey.name) });
    assert.match(
      problemOf(noKey, orderLines()),
      /on new only: a child row copied or synced before its parent/,
    );
    assert.deepEqual(found(orderLines(), noKey), ['constraint "Order Lines_customer_id_fkey" refuse']);
    assert.deepEqual(found(orderLines(), noKey, { ...everything, foreignKeysLater: true }), [
      'constraint "Order Lines_customer_id_fkey" warn',
    ]);
    // To a table not migrated it is never created, so nothing will add it later.
    assert.match(
      problemOf(orderLines(), noKey, { migrated: [lines], foreignKeysLater: true }),
      /references "public"\."customers", which this migration does not move/,
    );
  });

  it('does not count NOT VALID as a difference: it only says old rows were not checked', () => {
    const notValid = orderLines({
      constraints: orderLines().constraints.map((c) =>
        c === customerKey ? { ...c, definition: `${c.definition} NOT VALID` } : c,
      ),
    });
    assert.deepEqual(compareDefinitions(orderLines(), notValid, everything), []);
  });

  it('warns of a non-unique index on one side only or built differently', () => {
    const noIndex = orderLines({ indexes: [uniqueLowerSelect] });
    assert.deepEqual(found(orderLines(), noIndex), ['index "order_lines_customer" warn']);
    assert.match(
      problemOf(orderLines(), noIndex, { ...everything, indexesLater: true }),
      /on old only; it is built on new after the backfill/,
    );
    assert.deepEqual(found(noIndex, orderLines()), ['index "order_lines_customer" warn']);
    const otherOrder = orderLines({
      indexes: [
        { ...byCustomer, definition: byCustomer.definition.replace('created_at DESC', 'created_at') },
        uniqueLowerSelect,
      ],
    });
    assert.deepEqual(found(orderLines(), otherOrder), ['index "order_lines_customer" warn']);
  });

  it('warns of different partitions when both sides are partitioned; plain on one side is fine', () => {
    const fewer = eventsTable({ partitions: eventsTable().partitions.slice(0, 1) });
    assert.deepEqual(found(eventsTable(), fewer), ['partition DEFAULT warn']);
    const otherSub = eventsTable({
      partitions: eventsTable().partitions.map((p) =>
        p.partitionBy === null ? p : { ...p, partitions: p.partitions.slice(0, 1) },
      ),
    });
    assert.deepEqual(found(eventsTable(), otherSub), [
      "partition FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') / DEFAULT warn",
    ]);
    assert.deepEqual(found(eventsTable(), eventsTable({ partitionBy: 'RANGE (id)' })), ['partitioning warn']);
    const plain = eventsTable({
      partitionBy: null,
      partitions: [],
      indexes: [
        {
          ...eventsTable().indexes[0]!,
          definition: eventsTable().indexes[0]!.definition.replace('ON ONLY', 'ON'),
        },
      ],
    });
    assert.deepEqual(compareDefinitions(eventsTable(), plain, everything), []);
    assert.deepEqual(compareDefinitions(plain, eventsTable(), everything), []);
  });

  it('describes the differences in one line, refusals first', () => {
    const changed = withColumn(withColumn(orderLines(), 'status', { default: "'open'::text" }), 'quantity', {
      type: 'bigint',
    });
    assert.equal(
      describeDefinitionDifferences(lines, compareDefinitions(orderLines(), changed, everything)),
      `table "public"."Order Lines" differs between old and new: column "quantity": type integer on old, bigint on new; column "status": default 'new'::text on old, default 'open'::text on new (warning)`,
    );
  });
});
