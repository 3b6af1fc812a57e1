// Which column can distribute a table on a Citus target: one of its columns, in its primary key and
// in every unique constraint (db/citus.ts); the refusal names the constraints that lack it.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { distributionColumnProblem } from '../../db/citus';
import type { ColumnDefinition, ConstraintDefinition, TableDefinition } from '../../db/table-definition';

function definition(
  columns: string[],
  constraints: Array<Omit<ConstraintDefinition, 'definition'>>,
): TableDefinition {
  return {
    table: { schema: 'public', table: 'orders' },
    columns: columns.map((name): ColumnDefinition => ({
      name,
      type: 'bigint',
      notNull: true,
      default: null,
      identity: null,
      identityOptions: null,
      generated: null,
      collation: null,
    })),
    constraints: constraints.map((c) => ({ ...c, definition: '' })),
    indexes: [],
    ownedSequences: [],
    partitionBy: null,
    partitions: [],
  };
}

describe('a distribution column', () => {
  const orders = definition(
    ['tenant_id', 'id', 'handle'],
    [
      { name: 'orders_pkey', kind: 'primary key', columns: ['tenant_id', 'id'] },
      { name: 'orders_handle_key', kind: 'unique', columns: ['tenant_id', 'handle'] },
      { name: 'orders_id_check', kind: 'check', columns: ['id'] },
    ],
  );

  it('is fine in the primary key and every unique constraint', () => {
    assert.equal(distributionColumnProblem(orders, 'tenant_id'), null);
  });

  it('is refused outside a unique constraint, naming it, or when the table has no such column', () => {
    assert.equal(
      distributionColumnProblem(orders, 'id'),
      'Citus distributes "public"."orders" by id only when its primary key and every unique constraint include it, and unique orders_handle_key (tenant_id, handle) does not',
    );
    assert.match(
      distributionColumnProblem(orders, 'handle') ?? '',
      /, and primary key orders_pkey \(tenant_id, id\) does not$/,
    );
    assert.equal(
      distributionColumnProblem(orders, 'customer_id'),
      '"public"."orders" has no column customer_id',
    );
  });
});
