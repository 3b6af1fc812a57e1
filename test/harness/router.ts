// What the router tests share: router settings for the test run's servers, a table on both sides
// with capture on old, and a way to move the stage and wait until a router follows it.
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { createActivities, prepareWithoutWorkflow, type Activities } from '../../activities';
import type { TableRef } from '../../model/tables';
import { ConnectionPools } from '../../db/pools';
import { resolveConnections } from '../../config/connections';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { createRouter, type MigrationRouter, type RouterOptions } from '../../router';
import { setStage } from '../../db/stage-store';
import type { Stage } from '../../model/stages';
import { createLogger } from '../../db/logger';
import assert from 'node:assert/strict';
import type { WorkflowHandle } from '@temporalio/client';
import pg from 'pg';
import { ensureHelperSchema } from '../../db/helper-schema';
import { compareTables } from '../../db/verifier';
import { reconciliationWorkflow } from '../../workflows';
import type { startRunningWorker } from './backfill';
import { asMigrator, ensureMigratorRole, servers, testSite } from './servers';
import { waitFor } from './wait';

export function routerOptions(migration: string, overrides: Partial<RouterOptions> = {}): RouterOptions {
  return {
    migration,
    old: { connectionString: servers.oldUrl, max: 8 },
    new: { connectionString: servers.newUrl, max: 8 },
    stageWatcher: { pollMs: 200, heartbeatMs: 1000 },
    logger: createLogger({ name: 'router', level: 'error', pretty: false }),
    ...overrides,
  };
}

/** A logger whose JSON lines are kept, to check what the router logged (and what it did not). */
export function capturedLogger(): {
  logger: ReturnType<typeof createLogger>;
  lines: Array<Record<string, unknown>>;
} {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (line.trim() !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { logger: createLogger({ name: 'router', level: 'info', pretty: false, destination }), lines };
}

/** A fresh migration name and a started router following it. */
export async function startRouter(prefix: string, overrides: Partial<RouterOptions> = {}) {
  const migration = overrides.migration ?? `${prefix}-${randomUUID().slice(0, 8)}`;
  const router = await createRouter(routerOptions(migration, overrides));
  return { migration, router };
}

/** A migration name for a test, unique to the run. */
export function testMigration(prefix: string): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/**
 * A sample table with the same `rows` rows on old and on `newPool`, prepared for `migration` as the
 * migration prepares it before `dual_write`: claimed on both sides, TRUNCATE guarded, change
 * capture on old.
 */
export async function routedTable(
  oldPool: pg.Pool,
  newPool: pg.Pool,
  name: string,
  rows: number,
  migration: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<TableRef> {
  const table = { schema: 'public', table: `${name}_${randomUUID().slice(0, 8)}` };
  for (const pool of [oldPool, newPool]) {
    await pool.query(sampleTableDdl(table));
    await seedSampleRows(pool, table, rows);
  }
  await withMigrationActivities(env, (activities) => prepareWithoutWorkflow(activities, migration, [table]));
  return table;
}

/** Runs `work` with the activities of a worker connected as `env` says, then closes their pools. */
export async function withMigrationActivities<T>(
  env: NodeJS.ProcessEnv,
  work: (activities: Activities) => Promise<T>,
): Promise<T> {
  const pools = new ConnectionPools(resolveConnections(testSite('unused'), env));
  try {
    return await work(createActivities({ pools }));
  } finally {
    await pools.end();
  }
}

/**
 * Removes a routed table's capture, guards and claim and forgets its pending changes, so no later
 * drain meets them.
 */
export async function removeRoutedCapture(
  table: TableRef,
  migration: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  await withMigrationActivities(env, async (activities) => {
    const servers = await activities.bindServers({ migration });
    for (const connection of ['old', 'new'] as const) {
      const scope = { migration, servers, connection, tables: [table] };
      await activities.removeChangeCapture({ ...scope, discardPending: true });
      await activities.removeTruncateGuard(scope);
      await activities.removeMigrationHelpers({ servers, connection, migration });
    }
  });
}

/** Sets the stage and waits until every router follows it. */
export async function moveStage(
  oldPool: pg.Pool,
  migration: string,
  routers: MigrationRouter[],
  stage: Stage,
  readPercent?: number,
): Promise<void> {
  const state = await setStage(oldPool, migration, { stage, readPercent });
  await waitFor(`routers to follow ${stage}`, () =>
    Promise.resolve(routers.every((router) => router.stage.version >= state.version)),
  );
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}

/**
 * A fresh database on each server, so the change log and helper tables are this test's alone. `urls`
 * and `pools` connect as the servers' own user (setup, and writers that bypass the routers); `env`,
 * for a worker or activities, connects as the tests' migration role, so the write guard tells the two
 * apart as it tells an application from the migration.
 */
export async function freshDatabases(prefix: string, newUrl = servers.newUrl) {
  const database = `${prefix}_${randomUUID().slice(0, 8)}`;
  for (const url of [servers.oldUrl, newUrl]) {
    const admin = new pg.Client({ connectionString: url });
    await admin.connect();
    try {
      await admin.query(`CREATE DATABASE ${database}`);
    } finally {
      await admin.end();
    }
  }
  const urls = { old: withDatabase(servers.oldUrl, database), new: withDatabase(newUrl, database) };
  const pools = {
    old: new pg.Pool({ connectionString: urls.old, max: 4 }),
    new: new pg.Pool({ connectionString: urls.new, max: 4 }),
  };
  for (const pool of Object.values(pools)) pool.on('error', () => undefined);
  for (const url of Object.values(urls)) await ensureMigratorRole(url);
  const migratorUrls = { old: asMigrator(urls.old), new: asMigrator(urls.new) };
  // The helper schema belongs to the migration's role, which creates and replaces its functions.
  for (const url of Object.values(migratorUrls)) {
    const migrator = new pg.Pool({ connectionString: url, max: 1 });
    try {
      await ensureHelperSchema(migrator);
    } finally {
      await migrator.end();
    }
  }
  return {
    urls,
    migratorUrls,
    pools,
    env: { ...process.env, OLD_DATABASE_URL: migratorUrls.old, NEW_DATABASE_URL: migratorUrls.new },
    end: () => Promise.all(Object.values(pools).map((pool) => pool.end())),
  };
}

/** Asserts that the table is the same on both sides, row by row. */
export async function assertTablesEqual(
  oldPool: pg.Pool,
  newPool: pg.Pool,
  table: TableRef,
  what: string,
): Promise<void> {
  const comparison = await compareTables(oldPool, newPool, table, ['id']);
  assert.equal(comparison.differenceCount, 0, `${what}: ${JSON.stringify(comparison.differences)}`);
}

/** Starts reconciliation of a migration's change log from old to new on a running test worker. */
export function startReconciliation(
  worker: Awaited<ReturnType<typeof startRunningWorker>>,
  name: string,
): Promise<WorkflowHandle<typeof reconciliationWorkflow>> {
  return worker.client.workflow.start(reconciliationWorkflow, {
    taskQueue: worker.taskQueue,
    workflowId: `reconcile-${name}-${randomUUID().slice(0, 8)}`,
    args: [{ migration: name, from: 'old', to: 'new', idlePollMs: 200 }],
  });
}

/** A login role with plain table rights, as an application (or a cron job) connects. */
export async function applicationRole(admin: pg.Pool, url: string, tables: string[]): Promise<string> {
  const role = `app_${randomUUID().slice(0, 8)}`;
  const password = randomUUID();
  await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  await admin.query(`GRANT USAGE ON SCHEMA public TO ${role}`);
  for (const table of tables)
    await admin.query(`GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ${table} TO ${role}`);
  const parsed = new URL(url);
  parsed.username = role;
  parsed.password = password;
  return parsed.toString();
}
