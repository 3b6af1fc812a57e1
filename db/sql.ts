// SQL text helpers: every identifier and literal the project writes into SQL is quoted here. Values
// are parameters wherever the protocol allows; COPY takes no parameters, so keys become literals.

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function quoteTable(table: { schema: string; table: string }): string {
  return `${quoteIdent(table.schema)}.${quoteIdent(table.table)}`;
}

export function quoteList(names: readonly string[]): string {
  return names.map(quoteIdent).join(', ');
}

/** A string literal that is safe whatever standard_conforming_strings says (E'' when it holds a backslash). */
export function quoteLiteral(value: string): string {
  const quoted = `'${value.replace(/'/g, "''")}'`;
  return value.includes('\\') ? `E${quoted.replace(/\\/g, '\\\\')}` : quoted;
}

/** A key as a row of typed literals, e.g. ('42'::bigint, 'eu'::text), comparable with (k1, k2). */
export function keyLiteral(key: readonly string[], types: readonly string[]): string {
  if (key.length !== types.length) {
    throw new Error(`a key has ${key.length} values but the primary key has ${types.length} columns`);
  }
  return `(${key.map((value, i) => `${quoteLiteral(value)}::${types[i]}`).join(', ')})`;
}

/** The primary key of a row as text[] in the session's canonical text form (UTC, ISO dates). */
export function keyTextArray(columns: readonly string[], alias?: string): string {
  const prefix = alias === undefined ? '' : `${alias}.`;
  return `ARRAY[${columns.map((column) => `${prefix}${quoteIdent(column)}::text`).join(', ')}]`;
}
