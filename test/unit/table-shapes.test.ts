// Comparing old's and new's table definitions (hazard 10): every difference is named; column order
// alone is not a difference.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareTableShapes, createTableSql, type TableShape } from '../../activities/inspector';

function shape(columns: [string, string, boolean][], primaryKey: string[]): TableShape {
  return {
    table: { schema: 'public', table: 'orders' },
    columns: columns.map(([name, type, notNull]) => ({ name, type, notNull })),
    primaryKey,
    primaryKeyTypes: primaryKey.map((key) => columns.find(([name]) => name === key)?.[1] ?? 'text'),
    copyColumns: columns.map(([name]) => name),
    identityAlways: false,
    estimatedRows: 0,
    totalBytes: 0,
  };
}

const old = shape(
  [
    ['id', 'bigint', true],
    ['amount', 'numeric(14,2)', false],
    ['note', 'text', false],
  ],
  ['id'],
);

describe('table shape comparison', () => {
  it('finds no difference for the same columns in another order', () => {
    const reordered = shape(
      [
        ['note', 'text', false],
        ['id', 'bigint', true],
        ['amount', 'numeric(14,2)', false],
      ],
      ['id'],
    );
    assert.deepEqual(compareTableShapes(old, reordered), []);
  });

  it('names a changed type, a missing column, an extra NOT NULL column and a different key', () => {
    const changed = shape(
      [
        ['id', 'integer', true],
        ['amount', 'numeric(14,2)', true],
        ['extra', 'text', true],
      ],
      ['id', 'amount'],
    );
    assert.deepEqual(compareTableShapes(old, changed), [
      { column: 'id', problem: 'type bigint on old, integer on new' },
      { column: 'amount', problem: 'NOT NULL on new but nullable on old' },
      { column: 'note', problem: 'missing on new (old has text)' },
      { column: 'extra', problem: 'only on new, NOT NULL (text): old rows cannot fill it' },
      { column: '(primary key)', problem: '(id) on old, (id, amount) on new' },
    ]);
  });

  it('writes CREATE TABLE with quoted names, NOT NULL and the primary key', () => {
    const odd = shape(
      [
        ['Order "Id"', 'bigint', true],
        ['tags', 'text[]', false],
      ],
      ['Order "Id"'],
    );
    assert.equal(
      createTableSql(odd),
      'CREATE TABLE IF NOT EXISTS "public"."orders" ("Order ""Id""" bigint NOT NULL, "tags" text[], PRIMARY KEY ("Order ""Id"""))',
    );
  });
});
