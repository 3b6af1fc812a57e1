#!/usr/bin/env node
// `npm run demo`: the main job on the embedded default. Starts a throwaway Temporal dev server and
// two real PostgreSQL clusters (15 as old, 17 as new), seeds a sample table on old, and migrates it
// live with the migration workflow, from `off` to `complete` and retired, while an application keeps
// writing: two routers carry a mixed load (inserts, updates, deletes, transactions, rollbacks), and
// a cron job writes old directly, past the routers, until the ramp reaches its last read step. The
// steps: dual_write + backfill + verification, shadow, live 10% / 50% / 100% (each gated), the write
// switch, complete, a short soak, retire (approved by the demo, as an operator would). At the end new
// must equal old row for row, and old must refuse a write that bypasses the routers.
// DEMO_ROWS sets the table size (default 20000).
import path from 'node:path';
import { Client } from '@temporalio/client';
import { ConnectionPools, toleratingPool } from '../db/pools';
import { compareTables } from '../db/verifier';
import { MigrationControl, startMigration } from '../client/migrations';
import { resolveConnections } from '../config/connections';
import { OperatorError } from '../model/errors';
import { parseMigrationConfig, parseSiteConfig } from '../config/load';
import { redactSecrets } from '../model/redact';
import { startLocalStack, type LocalStack } from '../provision/local-stack';
import { parsePostgresMajor } from '../provision/postgres';
import { dataDir } from '../provision/project-paths';
import { sampleTableDdl, seedSampleRows } from '../provision/sample-table';
import { startWriteLoad, type WriteLoad } from '../provision/write-load';
import { createRouter, type MigrationRouter } from '../router';
import { createMigrationWorker } from '../worker/create-worker';
import { createLogger } from '../db/logger';
import { installRuntime } from '../worker/runtime';
import type { MigrationStatus } from '../model/messages';

const logger = createLogger({ name: 'demo' });
const MIGRATION = 'demo';

function rowsFromEnv(): number {
  const value = process.env.DEMO_ROWS ?? '20000';
  const rows = Number(value);
  if (!Number.isInteger(rows) || rows < 0)
    throw new OperatorError(`DEMO_ROWS is ${value}; it must be a whole number`);
  return rows;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<number> {
  installRuntime(logger, []);
  const rows = rowsFromEnv();
  let stack: LocalStack | undefined;
  let interrupted = false;
  const stop = () => {
    interrupted = true;
    // While the servers are still starting, main() stops them as soon as they are up.
    if (stack !== undefined) void stack.stop().then(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    stack = await startLocalStack({
      root: path.join(dataDir, 'demo'),
      persistent: false,
      oldMajor: parsePostgresMajor(process.env.OLD_PG_MAJOR, 15, 'OLD_PG_MAJOR'),
      newMajor: parsePostgresMajor(process.env.NEW_PG_MAJOR, 17, 'NEW_PG_MAJOR'),
      log: (message) => logger.info(message),
    });
    if (interrupted) return 130;
    const env = { ...process.env, ...stack.env };
    const site = parseSiteConfig({ temporal: { taskQueue: 'demo' } });
    const pools = new ConnectionPools(resolveConnections(site, env));
    const table = { schema: 'public', table: 'orders' };
    const routers: MigrationRouter[] = [];
    const loads: WriteLoad[] = [];
    const closers: Array<() => Promise<void>> = [];
    try {
      await pools.get('old').query(sampleTableDdl(table));
      await pools.get('new').query(sampleTableDdl(table));
      await seedSampleRows(pools.get('old'), table, rows, { step: 3 });
      logger.info(`seeded ${rows} rows into public.orders on old (PostgreSQL ${stack.old.major})`);

      const worker = await createMigrationWorker(site, env);
      const client = new Client({ connection: stack.temporal.environment.connection });
      for (let i = 0; i < 2; i++) {
        routers.push(
          await createRouter({
            migration: MIGRATION,
            // The application connects as its own role, not as the migration's.
            old: { connectionString: stack.old.appUrl, max: 4 },
            new: { connectionString: stack.new.appUrl, max: 4 },
            logger: createLogger({ name: `router-${i + 1}`, level: 'warn' }),
            stageWatcher: { pollMs: 500, heartbeatMs: 1000 },
            reconciliation: { client },
          }),
        );
      }
      const load = { writers: 1, maxId: rows * 3, pauseMs: 5 };
      loads.push(...routers.map((router, i) => startWriteLoad(router, table, { ...load, seed: i + 1 })));
      // The cron job: the same load, straight on old, as the application's role (not the migration's).
      const cronPool = toleratingPool({ connectionString: stack.old.appUrl, max: 2 });
      closers.push(() => cronPool.end());
      const cron = startWriteLoad(cronPool, table, { ...load, seed: 9 });
      loads.push(cron);

      const control = new MigrationControl(client, MIGRATION);
      const config = parseMigrationConfig({
        name: MIGRATION,
        tables: ['public.orders'],
        cutover: {
          readSteps: [10, 50, 100],
          stepSoak: '2s',
          soak: '5s',
          approvals: [],
          // The load rewrites rows without pause, so a shadow read often races a write.
          gates: { maxShadowMismatchRate: 0.2, maxLatencyRatio: 10 },
        },
        verification: { settle: '500ms' },
        queryBenchmark: {
          queries: [
            { name: 'orders of a customer', sql: 'SELECT * FROM public.orders WHERE customer_id = 4242' },
          ],
          topStatements: 0,
          runs: 10,
        },
      });
      const final = await worker.runUntil(
        (async () => {
          await startMigration(client, config, worker.taskQueue);
          let shown = '';
          let status: MigrationStatus;
          for (;;) {
            status = await control.status();
            if (status.error !== null) throw new Error(`the migration failed: ${status.error}`);
            const line = `${status.step}: ${status.phase}${status.held !== null ? ` (${status.held.reason})` : ''}`;
            if (line !== shown) {
              logger.info(`migration ${line}`);
              shown = line;
            }
            if (status.step === 'live 100%' && loads.includes(cron)) {
              const counts = await cron.stop();
              loads.splice(loads.indexOf(cron), 1);
              logger.info(
                `the cron job stops writing old directly before the switch (${counts.inserts} inserts, ${counts.updates} updates, ${counts.deletes} deletes so far)`,
              );
            }
            if (status.held?.kind === 'retire') break;
            if (status.held !== null) throw new Error(`the migration holds: ${status.held.reason}`);
            await sleep(200);
          }
          for (const writer of loads.splice(0)) await writer.stop();
          logger.info('the application stops writing; reverse sync brings its last writes on new to old');
          const bypass = await cronPool.query(`UPDATE public.orders SET note = 'bypass' WHERE id = 3`).then(
            () => undefined,
            (err: { code?: string; message: string }) => err,
          );
          if (bypass?.code !== '25006')
            throw new Error('old took a write that bypassed the routers after the switch');
          logger.info(`old refuses a write that bypasses the routers: ${bypass.message}`);
          for (let i = 0; i < 60; i++) {
            const comparison = await compareTables(pools.get('new'), pools.get('old'), table, ['id']);
            if (comparison.differenceCount === 0 && comparison.rowsNew === comparison.rowsOld) break;
            await sleep(500);
          }
          await control.approve('demo');
          return control.result();
        })(),
      );
      const [forward] = final.switches;
      const verification = final.tables[0]?.verification;
      logger.info(
        `migration ${final.phase}: backfill copied ${final.tables[0]?.rowsCopied} rows; verification compared ${verification?.rowsFrom} rows at ${verification?.rowsPerSecond} rows/s; the write switch held writes for ${forward?.fencedMs} ms`,
      );
      const comparison = await compareTables(pools.get('old'), pools.get('new'), table, ['id']);
      if (comparison.differenceCount > 0 || comparison.rowsNew !== comparison.rowsOld) {
        logger.error({ comparison }, `new differs from old in ${comparison.differenceCount} rows`);
        return 1;
      }
      logger.info(
        `verified: new (PostgreSQL ${stack.new.major}) equals old row for row, ${comparison.rowsNew} rows, every column; helpers retired, old keeps its data`,
      );
      return 0;
    } finally {
      await Promise.all(loads.map((writer) => writer.stop()));
      await Promise.all(routers.map((router) => router.end()));
      for (const close of closers) await close();
      await pools.end();
    }
  } finally {
    await stack?.stop();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    logger.error(
      err instanceof OperatorError ? err.message : `the demo failed: ${redactSecrets(String(err))}`,
    );
    process.exit(1);
  },
);
