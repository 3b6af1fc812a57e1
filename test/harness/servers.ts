// What the test run started (see test/run-tests.ts), as seen from inside a test file.
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import pg from 'pg';
import { parseSiteConfig } from '../../config/load';
import type { SiteConfig } from '../../config/schema';
import { createLogger } from '../../db/logger';
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

/**
 * The role the tests' migrations connect as (freshDatabases): another role than the one the tests
 * write with, so that the write guard, which lets only the migration's own role through, refuses the
 * tests' outside writers as it would an application's. A superuser, for the tests' convenience; one
 * test runs a whole migration as a least-privileged role of its own.
 */
const MIGRATOR_ROLE = 'lm_migrator';

/** `url` as the tests' migration role, with the same password, rather than as its own user. */
export function asMigrator(url: string): string {
  const parsed = new URL(url);
  parsed.username = MIGRATOR_ROLE;
  return parsed.toString();
}

/** Creates the tests' migration role on the server `adminUrl` reaches, with that URL's password. */
export async function ensureMigratorRole(adminUrl: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await client.query(
      `DO $$ BEGIN
         IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${MIGRATOR_ROLE}') THEN
           CREATE ROLE ${MIGRATOR_ROLE} LOGIN SUPERUSER;
         END IF;
       EXCEPTION WHEN unique_violation OR duplicate_object THEN NULL;
       END $$`,
    );
    await client.query(
      `ALTER ROLE ${MIGRATOR_ROLE} PASSWORD ${client.escapeLiteral(decodeURIComponent(new URL(adminUrl).password))}`,
    );
  } finally {
    await client.end();
  }
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
