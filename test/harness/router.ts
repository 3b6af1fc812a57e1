// What the router tests share: router settings for the test run's servers, a table on both sides
// with capture on old, and a way to move the stage and wait until a router follows it.
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { createCapture } from '../../activities/capture';
import type { TableRef } from '../../activities/inspector';
import { ConnectionPools } from '../../activities/pools';
import { TableShapes } from '../../activities/table-shapes';
import { resolveConnections } from '../../config/connections';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { createRouter, type MigrationRouter, type RouterOptions } from '../../router';
import { setStage, type Stage } from '../../router/stage-store';
import { createLogger } from '../../worker/logger';
import pg from 'pg';
import { ensureHelperSchema } from '../../activities/helper-schema';
import { servers, testSite } from './servers';
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

/**
 * A sample table with the same `rows` rows on old and on `newPool`, and change capture on old (as
 * the migration installs it before `dual_write`).
 */
export async function routedTable(
  oldPool: pg.Pool,
  newPool: pg.Pool,
  name: string,
  rows: number,
  env: NodeJS.ProcessEnv = process.env,
): Promise<TableRef> {
  const table = { schema: 'public', table: `${name}_${randomUUID().slice(0, 8)}` };
  for (const pool of [oldPool, newPool]) {
    await pool.query(sampleTableDdl(table));
    await seedSampleRows(pool, table, rows);
  }
  const pools = new ConnectionPools(resolveConnections(testSite('unused'), env));
  try {
    await createCapture(pools, new TableShapes(pools)).installChangeCapture({
      connection: 'old',
      tables: [table],
    });
  } finally {
    await pools.end();
  }
  return table;
}

/** Removes capture from a routed table and forgets its pending changes, so no later drain meets them. */
export async function removeRoutedCapture(
  table: TableRef,
  env: NodeJS.ProcessEnv = process.env,
): Promise<void> {
  const pools = new ConnectionPools(resolveConnections(testSite('unused'), env));
  try {
    await createCapture(pools, new TableShapes(pools)).removeChangeCapture({
      connection: 'old',
      tables: [table],
      discardPending: true,
    });
  } finally {
    await pools.end();
  }
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

/** A fresh database on each server, so the change log and helper tables are this test's alone. */
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
  await ensureHelperSchema(pools.old);
  return {
    urls,
    pools,
    env: { ...process.env, OLD_DATABASE_URL: urls.old, NEW_DATABASE_URL: urls.new },
    end: () => Promise.all(Object.values(pools).map((pool) => pool.end())),
  };
}
