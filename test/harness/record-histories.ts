#!/usr/bin/env node
// `npm run histories:record`: runs each workflow once on a throwaway local stack and saves its
// history under test/histories/, for the replay test. Run it when a workflow changes on purpose.
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { parseSiteConfig } from '../../config/load';
import { startLocalStack } from '../../provision/local-stack';
import { dataDir } from '../../provision/project-paths';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { ConnectionPools } from '../../activities/pools';
import { resolveConnections } from '../../config/connections';
import { createMigrationWorker } from '../../worker/create-worker';
import { createLogger } from '../../worker/logger';
import { installRuntime } from '../../worker/runtime';
import { backfillTableWorkflow } from '../../workflows';
import { historiesDir } from './workflow-histories';

async function main(): Promise<void> {
  const logger = createLogger({ name: 'record-histories' });
  installRuntime(logger, []);
  const stack = await startLocalStack({
    root: path.join(dataDir, 'record'),
    persistent: false,
    oldMajor: 15,
    newMajor: 17,
    log: (message) => logger.info(message),
  });
  try {
    const env = { ...process.env, ...stack.env };
    const site = parseSiteConfig({ temporal: { taskQueue: 'record-histories' } });
    const pools = new ConnectionPools(resolveConnections(site, env));
    const table = { schema: 'public', table: 'orders' };
    await pools.get('old').query(sampleTableDdl(table));
    await pools.get('new').query(sampleTableDdl(table));
    await seedSampleRows(pools.get('old'), table, 25);
    await pools.end();

    const worker = await createMigrationWorker(site, env);
    const client = new Client({ connection: stack.temporal.environment.connection });
    const histories = await worker.runUntil(
      (async () => {
        const handle = await client.workflow.start(backfillTableWorkflow, {
          taskQueue: worker.taskQueue,
          workflowId: 'backfill-orders-small-chunks',
          args: [{ migration: 'record', source: 'old', target: 'new', table, chunkSize: 10 }],
        });
        await handle.result();
        return [{ id: handle.workflowId, history: await handle.fetchHistory() }];
      })(),
    );
    mkdirSync(historiesDir, { recursive: true });
    for (const { id, history } of histories) {
      const file = path.join(historiesDir, `${id}.json`);
      writeFileSync(file, `${JSON.stringify(JSON.parse(historyToJSON(history)), null, 1)}\n`);
      logger.info(`saved ${file}`);
    }
  } finally {
    await stack.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
