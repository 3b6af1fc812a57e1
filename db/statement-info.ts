// What the router needs to know about a statement's text, worked out once per distinct text (ORMs
// send the same parameterized texts again and again): read or write, a fingerprint that names the
// statement without its values (for logs and metrics), and whether its rows come in a defined order.
import { createHash } from 'node:crypto';
import { classifyStatement, tokenize, type StatementKind } from './classify';

export interface StatementInfo {
  kind: StatementKind;
  reason: string;
  /** The text with every literal and parameter replaced by ?, words upper-cased, spaces collapsed. */
  normalized: string;
  /** A short hash of `normalized`. */
  fingerprint: string;
  /** The (last) statement orders its result at the top level, so row order is part of the answer. */
  ordered: boolean;
}

const CACHE_LIMIT = 2000;
const cache = new Map<string, StatementInfo>();

function analyse(sql: string): StatementInfo {
  const tokens = tokenize(sql);
  const normalized = tokens
    .map((token) =>
      token.kind === 'literal' ? '?' : token.kind === 'quoted-identifier' ? `"${token.text}"` : token.text,
    )
    .join(' ');
  let depth = 0;
  let ordered = false;
  tokens.forEach((token, i) => {
    if (token.kind !== 'punctuation' && token.kind !== 'word') return;
    if (token.text === '(') depth++;
    else if (token.text === ')') depth--;
    else if (token.text === ';') ordered = false;
    else if (depth === 0 && token.text === 'ORDER' && tokens[i + 1]?.text === 'BY') ordered = true;
  });
  const { kind, reason } = classifyStatement(sql);
  return {
    kind,
    reason,
    normalized,
    fingerprint: createHash('sha1').update(normalized).digest('hex').slice(0, 12),
    ordered,
  };
}

export function statementInfo(sql: string): StatementInfo {
  let info = cache.get(sql);
  if (info === undefined) {
    info = analyse(sql);
    // Applications with unbounded distinct texts (values inlined) must not grow the cache for ever.
    if (cache.size >= CACHE_LIMIT) cache.delete(cache.keys().next().value!);
    cache.set(sql, info);
  }
  return info;
}
