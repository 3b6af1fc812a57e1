// Turns a connection named in config ("old", "new") into connection settings, from this process's
// environment. Workflows only ever carry the name; each worker resolves it here.
import { OperatorError } from '../model/errors';
import { displayUrl } from '../model/redact';
import type { ConnectionSpec, SiteConfig } from './schema';
import type { ConnectionName, ResolvedConnection } from '../model/connections';

export function resolveConnection(
  name: ConnectionName,
  spec: ConnectionSpec,
  env: NodeJS.ProcessEnv,
): ResolvedConnection {
  let connectionString: string;
  let source: string;
  if (spec.urlEnv !== undefined) {
    const value = env[spec.urlEnv];
    if (value === undefined || value === '') {
      throw new OperatorError(
        `the ${name} database is not configured: set ${spec.urlEnv} to its URL (postgres://user:password@host:5432/db), or start the embedded dev stack with \`npm run stack\``,
      );
    }
    connectionString = value;
    source = spec.urlEnv;
  } else {
    connectionString = spec.url ?? '';
    source = `config ${name}.url`;
  }
  let url: URL;
  try {
    url = new URL(connectionString);
  } catch {
    throw new OperatorError(`${source} is not a URL such as postgres://user:password@host:5432/db`);
  }
  if (spec.passwordEnv !== undefined) {
    const password = env[spec.passwordEnv];
    if (password === undefined) {
      throw new OperatorError(`the ${name} database password is not set: set ${spec.passwordEnv}`);
    }
    url.password = encodeURIComponent(password);
    connectionString = url.toString();
  }
  return { name, connectionString, display: displayUrl(connectionString), source };
}

export function resolveConnections(
  site: SiteConfig,
  env: NodeJS.ProcessEnv,
): Record<ConnectionName, ResolvedConnection> {
  return {
    old: resolveConnection('old', site.old, env),
    new: resolveConnection('new', site.new, env),
  };
}
