// `migrate doctor`: checks that Temporal and both databases answer and prints their versions; for
// each failure, one line that says what is wrong and what to do.
import pg from 'pg';
import { resolveConnection, type ConnectionName, type ResolvedConnection } from '../config/connections';
import { OperatorError } from '../config/errors';
import { redactSecrets } from '../config/redact';
import type { SiteConfig } from '../config/schema';
import { resolveTemporalSettings } from '../config/temporal';
import { connectClient } from './temporal-connection';

export interface CheckResult {
  ok: boolean;
  line: string;
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

export async function checkTemporal(site: SiteConfig, env: NodeJS.ProcessEnv): Promise<CheckResult> {
  let settings;
  try {
    settings = resolveTemporalSettings(site, env);
  } catch (err) {
    if (err instanceof OperatorError) return { ok: false, line: `Temporal: ${err.message}` };
    throw err;
  }
  const where = `Temporal at ${settings.address}`;
  let client;
  try {
    client = await connectClient(settings);
  } catch (err) {
    return {
      ok: false,
      line: `${where} is unreachable (${redactSecrets((err as Error).message.split('\n')[0] ?? '')}): start it (\`npm run stack\` starts a local one) or set TEMPORAL_ADDRESS`,
    };
  }
  try {
    const info = await client.workflowService.getClusterInfo({});
    try {
      await client.workflowService.describeNamespace({ namespace: settings.namespace });
    } catch {
      return {
        ok: false,
        line: `${where} has no namespace "${settings.namespace}": create it (temporal operator namespace create ${settings.namespace}) or set TEMPORAL_NAMESPACE`,
      };
    }
    return {
      ok: true,
      line: `${where}: server ${info.serverVersion ?? 'unknown'}, namespace ${settings.namespace}`,
    };
  } catch (err) {
    return { ok: false, line: `${where} answered with an error: ${redactSecrets((err as Error).message)}` };
  } finally {
    await client.connection.close();
  }
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

/** describeDatabaseError for a resolved connection: where, who and which database come from its URL. */
export function describeConnectionError(connection: ResolvedConnection, err: unknown): string {
  const url = new URL(connection.connectionString);
  const where = `${url.hostname}:${url.port || '5432'}`;
  const user = decodeURIComponent(url.username);
  const database = decodeURIComponent(url.pathname.slice(1)) || user;
  return describeDatabaseError(connection.name, where, connection.source, user, database, err);
}

export async function checkDatabase(
  name: ConnectionName,
  site: SiteConfig,
  env: NodeJS.ProcessEnv,
): Promise<CheckResult> {
  let connection;
  try {
    connection = resolveConnection(name, site[name], env);
  } catch (err) {
    if (err instanceof OperatorError) return { ok: false, line: err.message };
    throw err;
  }
  const client = new pg.Client({
    connectionString: connection.connectionString,
    connectionTimeoutMillis: 5000,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ version: string }>(
      `SELECT current_setting('server_version') AS version`,
    );
    return {
      ok: true,
      line: `${name} database ${connection.display}: PostgreSQL ${rows[0]?.version ?? 'unknown'}`,
    };
  } catch (err) {
    return { ok: false, line: describeConnectionError(connection, err) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

export async function runDoctor(site: SiteConfig, env: NodeJS.ProcessEnv): Promise<CheckResult[]> {
  return Promise.all([
    checkTemporal(site, env),
    checkDatabase('old', site, env),
    checkDatabase('new', site, env),
  ]);
}
