// Scrubs credentials out of any text before it reaches a log line, an error or the terminal, and out
// of error objects (their message, stack, cause and every other field: Node's `Invalid URL` keeps the
// whole URL in `input`).

// The password of `scheme://user:password@host`: up to the last `@` of the URL (a password may hold
// an unencoded `@`), which ends at white space or a quote.
const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^:/?#@\s"'`]*:)[^\s"'`]*@/gi;
// `password=...` (libpq's keyword form, a URL's `?password=`, PGPASSWORD=...).
const KEYWORD_PASSWORD = /(\b(?:pg)?password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)/gi;
// `"password": "..."` (JSON).
const JSON_PASSWORD = /("(?:pg)?password"\s*:\s*)"(?:[^"\\]|\\.)*"/gi;

export const REDACTED = '***';

/** Replaces the password of any `scheme://user:password@host` URL and any `password=...` pair. */
export function redactSecrets(text: string): string {
  return text
    .replace(URL_PASSWORD, `$1${REDACTED}@`)
    .replace(KEYWORD_PASSWORD, `$1${REDACTED}`)
    .replace(JSON_PASSWORD, `$1"${REDACTED}"`);
}

/** `postgres://user@host:port/db`: a URL as an operator may see it, with no password. */
export function displayUrl(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    url.password = '';
    url.search = '';
    return url.toString();
  } catch {
    return redactSecrets(connectionString);
  }
}

/** True when a connection URL carries a password as `?password=` (or `&password=`) in its query. */
export function hasQueryPassword(url: URL): boolean {
  return [...url.searchParams.keys()].some((key) => key.toLowerCase() === 'password');
}

/** Fields of an error that may hold the text it was given whole (Node's `Invalid URL`: `input`). */
const DROPPED_FIELDS = new Set(['input', 'base', 'connectionString', 'password', 'config']);
const MAX_CAUSES = 5;

/**
 * A copy of `err` safe to raise or log: the same class (so `instanceof` and `name` still hold), its
 * message, stack and string fields redacted, fields that may hold a whole connection string dropped,
 * and its cause made safe the same way. Anything else that is thrown becomes an Error of its text.
 */
export function redactError(err: unknown, depth = 0): Error {
  if (!(err instanceof Error)) return new Error(redactSecrets(String(err)));
  const copy = Object.create(Object.getPrototypeOf(err) as object) as Error & Record<string, unknown>;
  for (const key of Object.getOwnPropertyNames(err)) {
    if (DROPPED_FIELDS.has(key)) continue;
    const value = (err as unknown as Record<string, unknown>)[key];
    let safe: unknown = value;
    if (typeof value === 'string') safe = redactSecrets(value);
    else if (key === 'cause') safe = depth < MAX_CAUSES ? redactError(value, depth + 1) : undefined;
    else if (value instanceof Error) safe = depth < MAX_CAUSES ? redactError(value, depth + 1) : undefined;
    else if (value !== null && typeof value === 'object') continue;
    Object.defineProperty(copy, key, {
      value: safe,
      writable: true,
      configurable: true,
      enumerable: Object.prototype.propertyIsEnumerable.call(err, key),
    });
  }
  return copy;
}
