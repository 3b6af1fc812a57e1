// SQL text helpers: every identifier the project writes into SQL is quoted here; values are always parameters.

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function quoteTable(table: { schema: string; table: string }): string {
  return `${quoteIdent(table.schema)}.${quoteIdent(table.table)}`;
}

export function quoteList(names: readonly string[]): string {
  return names.map(quoteIdent).join(', ');
}
