// What the test run started (see test/run-tests.ts), as seen from inside a test file.
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import pg from 'pg';
import { parseSiteConfig } from '../../config/load';
import type { SiteConfig } from '../../config/schema';
import { createLogger } from '../../worker/logger';
import { installRuntime } from '../../worker/runtime';

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') {
    throw new Error(
      `${name} is not set: integration tests run through \`npm test\`, which starts the servers`,
    );
  }
  return value;
}

export const servers = {
  get temporalAddress() {
    return required('TEMPORAL_ADDRESS');
  },
  get oldUrl() {
    return required('OLD_DATABASE_URL');
  },
  get newUrl() {
    return required('NEW_DATABASE_URL');
  },
  get temporalCli() {
    return required('TEMPORAL_CLI');
  },
};

/** The site config every test uses: connections and Temporal from the test run's environment. */
export function testSite(taskQueue: string): SiteConfig {
  return parseSiteConfig({ temporal: { taskQueue } });
}

export async function temporalClient(): Promise<Client> {
  const connection = await Connection.connect({ address: servers.temporalAddress });
  return new Client({ connection });
}

export function nativeConnection(): Promise<NativeConnection> {
  return NativeConnection.connect({ address: servers.temporalAddress });
}

export function databasePools(): { old: pg.Pool; new: pg.Pool; end(): Promise<void> } {
  const oldPool = new pg.Pool({ connectionString: servers.oldUrl, max: 4 });
  const newPool = new pg.Pool({ connectionString: servers.newUrl, max: 4 });
  return {
    old: oldPool,
    new: newPool,
    end: async () => {
      await Promise.all([oldPool.end(), newPool.end()]);
    },
  };
}

/**
 * For test files that run workers: the SDK logs warnings and errors only, so the runner's report
 * stays readable. Only there: an installed Runtime that no worker uses keeps the process alive.
 */
export function installQuietRuntime(): void {
  installRuntime(createLogger({ name: 'test', level: 'warn', pretty: false }), []);
}
