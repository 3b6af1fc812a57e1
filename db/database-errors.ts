// A database connection's failure in one line an operator can act on: what happened, where, and
// what to check; never a password. Used by `migrate doctor` and by the router when old cannot be read.
import type { ConnectionName } from '../model/connections';
import { redactSecrets } from '../model/redact';

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** Maps a connection failure to one line that names the cause and the fix. */
export function describeDatabaseError(
  name: ConnectionName,
  where: string,
  source: string,
  user: string,
  database: string,
  err: unknown,
): string {
  const code = errorCode(err);
  switch (code) {
    case 'ECONNREFUSED':
      return `${name} database at ${where} refuses connections: is the server running on that host and port? check ${source}`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `${name} database host in ${source} does not resolve (${where}): fix the host name`;
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return `${name} database at ${where} is unreachable (${code}): check the host, port and firewall in ${source}`;
    case '28P01':
      return `${name} database at ${where} rejected the password for user "${user}": fix the password in ${source}`;
    case '28000':
      return `${name} database at ${where} refused user "${user}" (${redactSecrets((err as Error).message)}): check the user in ${source} and the server's pg_hba.conf`;
    case '3D000':
      return `${name} database "${database}" does not exist on ${where}: create it (CREATE DATABASE ${database}) or fix the database name in ${source}`;
    default: {
      const message = redactSecrets((err as Error).message || String(err));
      if (/timeout/i.test(message)) {
        return `${name} database at ${where} did not answer in time: check the host, port and firewall in ${source}`;
      }
      return `${name} database at ${where} failed: ${message}${code ? ` (${code})` : ''}`;
    }
  }
}
