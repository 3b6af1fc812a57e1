// What changed in one table's definition between two moments on one server (the claim and now),
// in words an operator can act on: columns added, dropped or changed, constraints and unique indexes
// added or dropped, the partition key. Pure functions over table definitions.
import type { ColumnDefinition, TableDefinition } from './table-definition';

function columnWords(column: ColumnDefinition): string {
  const parts = [column.type];
  if (column.collation !== null) parts.push(`COLLATE ${column.collation}`);
  if (column.notNull) parts.push('NOT NULL');
  if (column.default !== null) parts.push(`DEFAULT ${column.default}`);
  if (column.identity !== null) parts.push(`GENERATED ${column.identity.toUpperCase()} AS IDENTITY`);
  if (column.generated !== null) parts.push(`GENERATED ALWAYS AS (${column.generated}) STORED`);
  return parts.join(' ');
}

/** The changes from `before` to `after`, one phrase each; empty when nothing a row depends on changed. */
export function describeDrift(before: TableDefinition, after: TableDefinition): string[] {
  const changes: string[] = [];
  const beforeColumns = new Map(before.columns.map((column) => [column.name, column]));
  const afterColumns = new Map(after.columns.map((column) => [column.name, column]));
  for (const column of after.columns) {
    const was = beforeColumns.get(column.name);
    if (was === undefined) changes.push(`column ${column.name} added (${columnWords(column)})`);
    else if (columnWords(was) !== columnWords(column)) {
      changes.push(`column ${column.name} changed from ${columnWords(was)} to ${columnWords(column)}`);
    }
  }
  for (const column of before.columns) {
    if (!afterColumns.has(column.name)) changes.push(`column ${column.name} dropped`);
  }
  const constraint = (c: TableDefinition['constraints'][number]) => c.definition;
  const beforeConstraints = new Set(before.constraints.map(constraint));
  const afterConstraints = new Set(after.constraints.map(constraint));
  for (const c of after.constraints) {
    if (!beforeConstraints.has(c.definition)) changes.push(`${c.kind} ${c.name} added (${c.definition})`);
  }
  for (const c of before.constraints) {
    if (!afterConstraints.has(c.definition)) changes.push(`${c.kind} ${c.name} dropped (${c.definition})`);
  }
  const uniqueIndexes = (def: TableDefinition) =>
    new Map(def.indexes.filter((index) => index.unique).map((index) => [index.name, index.definition]));
  const beforeIndexes = uniqueIndexes(before);
  const afterIndexes = uniqueIndexes(after);
  for (const [name, definition] of afterIndexes) {
    if (beforeIndexes.get(name) !== definition) changes.push(`unique index ${name} added (${definition})`);
  }
  for (const [name, definition] of beforeIndexes) {
    if (afterIndexes.get(name) !== definition) changes.push(`unique index ${name} dropped (${definition})`);
  }
  if (before.partitionBy !== after.partitionBy) {
    changes.push(
      `partition key changed from ${before.partitionBy ?? 'none'} to ${after.partitionBy ?? 'none'}`,
    );
  }
  return changes;
}
