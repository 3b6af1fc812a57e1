#!/usr/bin/env node
// `npm run demo`: the main job on the embedded default. Starts a throwaway Temporal dev server and
// two real PostgreSQL clusters (15 as old, 17 as new), seeds a sample table on old, copies it to
// new through the backfill workflow and a worker, checks that new equals old row for row, and
// stops everything. DEMO_ROWS sets the table size (default 20000).
import path from 'node:path';
import { Client } from '@temporalio/client';
import { ConnectionPools } from '../activities/pools';
import { compareTables } from '../activities/verifier';
import { resolveConnections } from '../config/connections';
import { OperatorError } from '../config/errors';
import { parseSiteConfig } from '../config/load';
import { redactSecrets } from '../config/redact';
import { startLocalStack, type LocalStack } from '../provision/local-stack';
import { parsePostgresMajor } from '../provision/postgres';
import { dataDir } from '../provision/project-paths';
import { sampleTableDdl, seedSampleRows } from '../provision/sample-table';
import { createMigrationWorker } from '../worker/create-worker';
import { createLogger } from '../worker/logger';
import { installRuntime } from '../worker/runtime';
import { backfillTableWorkflow } from '../workflows';

const logger = createLogger({ name: 'demo' });

function rowsFromEnv(): number {
  const value = process.env.DEMO_ROWS ?? '20000';
  const rows = Number(value);
  if (!Number.isInteger(rows) || rows < 0)
    throw new OperatorError(`DEMO_ROWS is ${value}; it must be a whole number`);
  return rows;
}

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
    try {
      await pools.get('old').query(sampleTableDdl(table));
      await pools.get('new').query(sampleTableDdl(table));
      await seedSampleRows(pools.get('old'), table, rows, { step: 3 });
      logger.info(`seeded ${rows} rows into public.orders on old (PostgreSQL ${stack.old.major})`);

      const worker = await createMigrationWorker(site, env);
      const client = new Client({ connection: stack.temporal.environment.connection });
      const started = Date.now();
      const result = await worker.runUntil(
        client.workflow.execute(backfillTableWorkflow, {
          taskQueue: worker.taskQueue,
          workflowId: 'demo-backfill-orders',
          args: [{ migration: 'demo', source: 'old', target: 'new', table, chunkSize: 1000 }],
        }),
      );
      const seconds = (Date.now() - started) / 1000;
      logger.info(
        `backfill copied ${result.rowsCopied} rows in ${result.chunksDone} chunks in ${seconds.toFixed(1)} s (${Math.round(result.rowsCopied / Math.max(seconds, 0.001))} rows/s)`,
      );
      const comparison = await compareTables(pools.get('old'), pools.get('new'), table, ['id']);
      if (comparison.differenceCount > 0 || comparison.rowsNew !== rows) {
        logger.error({ comparison }, `new differs from old in ${comparison.differenceCount} rows`);
        return 1;
      }
      logger.info(
        `verified: new (PostgreSQL ${stack.new.major}) equals old row for row, ${comparison.rowsNew} rows, every column`,
      );
      return 0;
    } finally {
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
