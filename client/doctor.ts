// `migrate doctor`: checks that Temporal and both databases answer and prints their versions; for
// each failure, one line that says what is wrong and what to do.
import pg from 'pg';
import { resolveConnection } from '../config/connections';
import type { ConnectionName, ResolvedConnection } from '../model/connections';
import { OperatorError } from '../model/errors';
import type { SiteConfig } from '../config/schema';
import { resolveTemporalSettings } from '../config/temporal';
import { describeDatabaseError } from '../db/database-errors';
import { connectClient } from './temporal-connection';
import { redactSecrets } from '../model/redact';

export interface CheckResult {
  ok: boolean;
  line: string;
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
