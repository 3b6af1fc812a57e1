// Read/write classification of SQL text for the router: a statement may run on the side that only
// serves reads when it provably reads: a plain SELECT (or VALUES, TABLE, SHOW, EXPLAIN without
// ANALYZE of a write) with no row locks, no SELECT INTO, no data-modifying CTE and no function call
// outside a list of known read-only functions. Everything else is a write and goes to the
// authoritative side. Comments, string literals, dollar quotes and quoted identifiers are skipped,
// so keywords inside them do not count.

export type StatementKind = 'read' | 'write';

export interface Classification {
  kind: StatementKind;
  /** Why, in a few words: shown in logs and metrics labels. */
  reason: string;
}

interface Token {
  /** Upper-cased word, or the punctuation character. */
  text: string;
  kind: 'word' | 'quoted-identifier' | 'literal' | 'punctuation';
}

/** Splits SQL into words and punctuation, dropping comments and the contents of literals. */
export function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < sql.length) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (/\s/.test(c)) {
      i++;
    } else if (c === '-' && next === '-') {
      while (i < sql.length && sql[i] !== '\n') i++;
    } else if (c === '/' && next === '*') {
      // Block comments nest in PostgreSQL.
      let depth = 0;
      do {
        if (sql[i] === '/' && sql[i + 1] === '*') {
          depth++;
          i += 2;
        } else if (sql[i] === '*' && sql[i + 1] === '/') {
          depth--;
          i += 2;
        } else i++;
      } while (depth > 0 && i < sql.length);
    } else if (c === "'" || ((c === 'E' || c === 'e') && next === "'")) {
      const escapes = c !== "'";
      i += escapes ? 2 : 1;
      while (i < sql.length) {
        if (escapes && sql[i] === '\\') i += 2;
        else if (sql[i] === "'" && sql[i + 1] === "'") i += 2;
        else if (sql[i] === "'") break;
        else i++;
      }
      i++;
      tokens.push({ text: "''", kind: 'literal' });
    } else if (c === '"') {
      const start = ++i;
      while (i < sql.length && !(sql[i] === '"' && sql[i + 1] !== '"')) i += sql[i] === '"' ? 2 : 1;
      tokens.push({ text: sql.slice(start, i), kind: 'quoted-identifier' });
      i++;
    } else if (c === '$' && /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.test(sql.slice(i))) {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i))![0];
      const end = sql.indexOf(tag, i + tag.length);
      i = end < 0 ? sql.length : end + tag.length;
      tokens.push({ text: "''", kind: 'literal' });
    } else if (/[A-Za-z_]/.test(c)) {
      const start = i;
      while (i < sql.length && /[A-Za-z0-9_$]/.test(sql[i]!)) i++;
      tokens.push({ text: sql.slice(start, i).toUpperCase(), kind: 'word' });
    } else if (/[0-9]/.test(c) || (c === '$' && /[0-9]/.test(next ?? ''))) {
      i++;
      while (i < sql.length && /[0-9.eE]/.test(sql[i]!)) i++;
      tokens.push({ text: '0', kind: 'literal' });
    } else {
      tokens.push({ text: c, kind: 'punctuation' });
      i++;
    }
  }
  return tokens;
}

const READ_STARTS = new Set(['SELECT', 'VALUES', 'TABLE', 'SHOW', 'WITH', 'EXPLAIN']);
const WRITES = new Set(['INSERT', 'UPDATE', 'DELETE', 'MERGE', 'TRUNCATE', 'COPY']);

/** Words that may stand before "(" without being a function call. */
const NOT_FUNCTIONS = new Set([
  'AS',
  'IN',
  'EXISTS',
  'ANY',
  'ALL',
  'SOME',
  'VALUES',
  'SELECT',
  'FROM',
  'WHERE',
  'AND',
  'OR',
  'NOT',
  'ON',
  'USING',
  'JOIN',
  'LATERAL',
  'OVER',
  'FILTER',
  'WITHIN',
  'GROUP',
  'BY',
  'CAST',
  'ROW',
  'ARRAY',
  'CASE',
  'WHEN',
  'THEN',
  'ELSE',
  'BETWEEN',
  'LIKE',
  'ILIKE',
  'IS',
  'UNION',
  'INTERSECT',
  'EXCEPT',
  'WITH',
  'RECURSIVE',
  'MATERIALIZED',
  'LIMIT',
  'OFFSET',
  'HAVING',
  'PARTITION',
  'ORDER',
  'DISTINCT',
  'COALESCE',
  'NULLIF',
  'GREATEST',
  'LEAST',
  'EXTRACT',
  'POSITION',
  'SUBSTRING',
  'TRIM',
  'OVERLAY',
  'INTERVAL',
  'TIMESTAMP',
  'DATE',
  'TIME',
  'NUMERIC',
  'DECIMAL',
  'VARCHAR',
  'CHAR',
  'CHARACTER',
  'FETCH',
  'FIRST',
  'NEXT',
  'ROWS',
  'ONLY',
  'RETURNING',
  'SET',
  'INTO',
  'TABLESAMPLE',
  'SYSTEM',
  'BERNOULLI',
  'REPEATABLE',
  'ASC',
  'DESC',
  'NULLS',
  'LAST',
  'WINDOW',
  'RANGE',
  'GROUPS',
]);

/** Built-in functions that only read (immutable or stable, no side effects). */
const READ_ONLY_FUNCTIONS = new Set([
  'COUNT',
  'SUM',
  'AVG',
  'MIN',
  'MAX',
  'BOOL_AND',
  'BOOL_OR',
  'EVERY',
  'ARRAY_AGG',
  'STRING_AGG',
  'JSON_AGG',
  'JSONB_AGG',
  'JSON_OBJECT_AGG',
  'JSONB_OBJECT_AGG',
  'STDDEV',
  'VARIANCE',
  'PERCENTILE_CONT',
  'PERCENTILE_DISC',
  'MODE',
  'ROW_NUMBER',
  'RANK',
  'DENSE_RANK',
  'LAG',
  'LEAD',
  'FIRST_VALUE',
  'LAST_VALUE',
  'NTH_VALUE',
  'NTILE',
  'CUME_DIST',
  'PERCENT_RANK',
  'LOWER',
  'UPPER',
  'LENGTH',
  'CHAR_LENGTH',
  'OCTET_LENGTH',
  'CONCAT',
  'CONCAT_WS',
  'REPLACE',
  'LEFT',
  'RIGHT',
  'LPAD',
  'RPAD',
  'LTRIM',
  'RTRIM',
  'BTRIM',
  'SPLIT_PART',
  'STRPOS',
  'REVERSE',
  'INITCAP',
  'FORMAT',
  'MD5',
  'SHA256',
  'ENCODE',
  'DECODE',
  'TO_CHAR',
  'TO_DATE',
  'TO_TIMESTAMP',
  'TO_NUMBER',
  'REGEXP_REPLACE',
  'REGEXP_MATCH',
  'REGEXP_MATCHES',
  'STARTS_WITH',
  'TRANSLATE',
  'ABS',
  'CEIL',
  'CEILING',
  'FLOOR',
  'ROUND',
  'TRUNC',
  'MOD',
  'POWER',
  'SQRT',
  'SIGN',
  'LN',
  'LOG',
  'EXP',
  'RANDOM',
  'NOW',
  'CURRENT_DATE',
  'CLOCK_TIMESTAMP',
  'STATEMENT_TIMESTAMP',
  'TRANSACTION_TIMESTAMP',
  'DATE_TRUNC',
  'DATE_PART',
  'AGE',
  'MAKE_DATE',
  'MAKE_INTERVAL',
  'MAKE_TIMESTAMPTZ',
  'TIMEZONE',
  'JSONB_BUILD_OBJECT',
  'JSON_BUILD_OBJECT',
  'JSONB_BUILD_ARRAY',
  'JSON_BUILD_ARRAY',
  'TO_JSON',
  'TO_JSONB',
  'ROW_TO_JSON',
  'JSONB_EXTRACT_PATH',
  'JSONB_EXTRACT_PATH_TEXT',
  'JSONB_ARRAY_ELEMENTS',
  'JSONB_ARRAY_ELEMENTS_TEXT',
  'JSONB_EACH',
  'JSONB_EACH_TEXT',
  'JSONB_OBJECT_KEYS',
  'JSONB_ARRAY_LENGTH',
  'JSONB_TYPEOF',
  'JSONB_SET',
  'JSONB_STRIP_NULLS',
  'JSONB_PATH_QUERY',
  'JSONB_PATH_EXISTS',
  'ARRAY_LENGTH',
  'CARDINALITY',
  'ARRAY_POSITION',
  'ARRAY_REMOVE',
  'ARRAY_APPEND',
  'ARRAY_CAT',
  'UNNEST',
  'GENERATE_SERIES',
  'STRING_TO_ARRAY',
  'ARRAY_TO_STRING',
  'GEN_RANDOM_UUID',
  'CURRVAL',
  'LASTVAL',
  'VERSION',
  'CURRENT_SETTING',
  'PG_BACKEND_PID',
  'HASHTEXT',
  'TO_TSVECTOR',
  'TO_TSQUERY',
  'PLAINTO_TSQUERY',
  'WEBSEARCH_TO_TSQUERY',
  'TS_RANK',
  'SIMILARITY',
  'ISFINITE',
  'NUM_NONNULLS',
  'NUM_NULLS',
]);

/**
 * Whether `name(...)` at `index` names columns rather than calls a function: an alias after AS
 * (`AS t(a, b)`) or a CTE's columns (`t(n) AS (...)`, also `AS [NOT] MATERIALIZED (...)`).
 */
function isColumnList(tokens: Token[], index: number): boolean {
  if (tokens[index - 1]?.text === 'AS') return true;
  let depth = 0;
  let close = index + 1;
  for (; close < tokens.length; close++) {
    if (tokens[close]!.text === '(') depth++;
    else if (tokens[close]!.text === ')' && --depth === 0) break;
  }
  const after = tokens.slice(close + 1, close + 5).map((token) => token.text);
  if (after[0] !== 'AS') return false;
  const body = after[1] === 'NOT' ? after[3] : after[1] === 'MATERIALIZED' ? after[2] : after[1];
  return body === '(';
}

function splitStatements(tokens: Token[]): Token[][] {
  const statements: Token[][] = [[]];
  for (const token of tokens) {
    if (token.kind === 'punctuation' && token.text === ';') statements.push([]);
    else statements[statements.length - 1]!.push(token);
  }
  return statements.filter((statement) => statement.length > 0);
}

function classifyStatementTokens(tokens: Token[]): Classification {
  const first = tokens.find((token) => !(token.kind === 'punctuation' && token.text === '('));
  if (first === undefined || first.kind !== 'word')
    return { kind: 'write', reason: 'not a statement I can read' };
  if (first.text === 'EXPLAIN') {
    // EXPLAIN runs its statement only with ANALYZE: EXPLAIN (ANALYZE, ...) stmt or EXPLAIN ANALYZE stmt.
    let rest = tokens.slice(tokens.indexOf(first) + 1);
    let analyzed = false;
    const isAnalyze = (token: Token | undefined) => token?.text === 'ANALYZE' || token?.text === 'ANALYSE';
    if (rest[0]?.text === '(') {
      const close = rest.findIndex((token) => token.text === ')');
      analyzed = rest.slice(0, close).some(isAnalyze);
      rest = rest.slice(close + 1);
    } else {
      while (isAnalyze(rest[0]) || rest[0]?.text === 'VERBOSE') {
        analyzed ||= isAnalyze(rest[0]);
        rest = rest.slice(1);
      }
    }
    return analyzed
      ? classifyStatementTokens(rest)
      : { kind: 'read', reason: 'EXPLAIN without ANALYZE runs nothing' };
  }
  if (!READ_STARTS.has(first.text)) return { kind: 'write', reason: `${first.text} statement` };
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i]!;
    if (token.kind !== 'word') continue;
    if (WRITES.has(token.text)) return { kind: 'write', reason: `${token.text} inside the statement` };
    if (token.text === 'FOR') {
      const lock = tokens
        .slice(i + 1, i + 3)
        .map((t) => t.text)
        .join(' ');
      if (/^(UPDATE|SHARE|NO KEY|KEY SHARE)/.test(lock))
        return { kind: 'write', reason: `locks rows (FOR ${lock})` };
    }
    if (token.text === 'INTO' && first.text === 'SELECT')
      return { kind: 'write', reason: 'SELECT INTO creates a table' };
    const next = tokens[i + 1];
    const previous = tokens[i - 1];
    const qualified = previous?.kind === 'punctuation' && previous.text === '.';
    if (
      next?.kind === 'punctuation' &&
      next.text === '(' &&
      (qualified || !NOT_FUNCTIONS.has(token.text)) &&
      !isColumnList(tokens, i)
    ) {
      if (qualified || !READ_ONLY_FUNCTIONS.has(token.text)) {
        return { kind: 'write', reason: `calls ${token.text.toLowerCase()}(), which may write` };
      }
    }
  }
  return { kind: 'read', reason: `plain ${first.text}` };
}

/** Classifies SQL text (one statement or several separated by ";"): a write if any part writes. */
export function classifyStatement(sql: string): Classification {
  const statements = splitStatements(tokenize(sql));
  if (statements.length === 0) return { kind: 'write', reason: 'empty statement' };
  for (const statement of statements) {
    const classified = classifyStatementTokens(statement);
    if (classified.kind === 'write') return classified;
  }
  return classifyStatementTokens(statements[0]!);
}
