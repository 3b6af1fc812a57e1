// Scrubs credentials out of any text before it reaches a log line, an error or the terminal.

const URL_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^:/?#@\s]*:)([^@\s/]+)@/gi;
const KEYWORD_PASSWORD = /(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)/gi;

export const REDACTED = '***';

/** Replaces the password of any `scheme://user:password@host` URL and any `password=...` pair. */
export function redactSecrets(text: string): string {
  return text.replace(URL_PASSWORD, `$1${REDACTED}@`).replace(KEYWORD_PASSWORD, `$1${REDACTED}`);
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
