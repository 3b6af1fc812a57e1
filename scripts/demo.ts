#!/usr/bin/env node
// `npm run demo`: the main job on the embedded default. Starts a throwaway Temporal dev server and
// two real PostgreSQL clusters (15 as old, 17 as new), seeds a sample table on old, and copies it to
// new live: writers keep inserting, updating and deleting rows on old (straight, as a cron job
// would) while the backfill workflow copies the table and the reconciliation workflow carries their
// changes over. Then the writers stop, the change log drains, and new must equal old row for row.
// DEMO_ROWS sets the table size (default 20000).
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
import { startWriteLoad } from '../provision/write-load';
import { createMigrationWorker } from '../worker/create-worker';
import { createLogger } from '../worker/logger';
import { installRuntime } from '../worker/runtime';
import { backfillTableWorkflow, reconciliationWorkflow } from '../workflows';
import { drainAndStopSignal } from '../workflows/messages';

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
      const writers = startWriteLoad(pools.get('old'), table, {
        writers: 2,
        maxId: rows * 3,
        seed: 1,
        pauseMs: 5,
      });
      let result: { rowsCopied: number; chunksDone: number };
      let seconds = 0;
      let reconciled: { entriesApplied: number; keysSynced: number };
      try {
        [result, reconciled] = await worker.runUntil(
          (async () => {
            const reconciliation = await client.workflow.start(reconciliationWorkflow, {
              taskQueue: worker.taskQueue,
              workflowId: 'demo-reconciliation',
              args: [{ migration: 'demo', from: 'old', to: 'new' }],
            });
            const started = Date.now();
            const copied = await client.workflow.execute(backfillTableWorkflow, {
              taskQueue: worker.taskQueue,
              workflowId: 'demo-backfill-orders',
              args: [{ migration: 'demo', source: 'old', target: 'new', table, chunkSize: 1000 }],
            });
            seconds = (Date.now() - started) / 1000;
            const counts = await writers.stop();
            logger.info(
              `writers on old during the copy: ${counts.inserts} inserts, ${counts.updates} updates, ${counts.deletes} deletes, ${counts.rolledBack} rolled back`,
            );
            await reconciliation.signal(drainAndStopSignal);
            return [copied, await reconciliation.result()] as const;
          })(),
        );
      } finally {
        await writers.stop();
      }
      logger.info(
        `backfill copied ${result.rowsCopied} rows in ${result.chunksDone} chunks in ${seconds.toFixed(1)} s (${Math.round(result.rowsCopied / Math.max(seconds, 0.001))} rows/s); reconciliation applied ${reconciled.entriesApplied} captured changes (${reconciled.keysSynced} keys)`,
      );
      const comparison = await compareTables(pools.get('old'), pools.get('new'), table, ['id']);
      if (comparison.differenceCount > 0 || comparison.rowsNew !== comparison.rowsOld) {
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
