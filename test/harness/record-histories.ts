#!/usr/bin/env node
// `npm run histories:record`: runs each workflow once on a throwaway local stack and saves every run
// of its history under test/histories/<today>/, a new released shape for the replay test; earlier
// folders stay (see workflow-histories.ts). Run it when a workflow changes on purpose, its change
// behind `patched()`. Continue-as-new is made to come early here, so the saved runs include it.
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Client } from '@temporalio/client';
import pg from 'pg';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { ConnectionPools } from '../../db/pools';
import { quoteTable } from '../../db/sql';
import { resolveConnections } from '../../config/connections';
import { parseMigrationConfig, parseSiteConfig } from '../../config/load';
import { MigrationControl, startMigration } from '../../client/migrations';
import { startLocalStack } from '../../provision/local-stack';
import { dataDir } from '../../provision/project-paths';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { createMigrationWorker } from '../../worker/create-worker';
import { createLogger } from '../../db/logger';
import { installRuntime } from '../../worker/runtime';
import { backfillTableWorkflow, reconciliationWorkflow, verificationWorkflow } from '../../workflows';
import { reconciliationWorkflowId } from '../../model/ids';
import {
  discrepancySignal,
  drainAndStopSignal,
  pauseSignal,
  resumeSignal,
  tuneSignal,
} from '../../workflows/messages';
import { historiesDir, historyFileName } from './workflow-histories';

async function main(): Promise<void> {
  const logger = createLogger({ name: 'record-histories' });
  installRuntime(logger, []);
  const stack = await startLocalStack({
    root: path.join(dataDir, 'record'),
    persistent: false,
    oldMajor: 15,
    newMajor: 17,
    temporalDynamicConfig: { 'limit.historyCount.suggestContinueAsNew': 150 },
    log: (message) => logger.info(message),
  });
  try {
    const env = { ...process.env, ...stack.env };
    const site = parseSiteConfig({ temporal: { taskQueue: 'record-histories' } });
    const pools = new ConnectionPools(resolveConnections(site, env));
    const table = { schema: 'public', table: 'orders' };
    await pools.get('old').query(sampleTableDdl(table));
    await pools.get('new').query(sampleTableDdl(table));
    await seedSampleRows(pools.get('old'), table, 3000);

    const worker = await createMigrationWorker(site, env);
    const client = new Client({ connection: stack.temporal.environment.connection });
    const workflowIds = await worker.runUntil(
      (async () => {
        const reconciliation = await client.workflow.start(reconciliationWorkflow, {
          taskQueue: worker.taskQueue,
          workflowId: 'reconcile-record',
          args: [{ migration: 'record', from: 'old', to: 'new', idlePollMs: 200 }],
        });
        // An application writing old through the copy, so the brake finds it busy and starts slowly.
        const application = new pg.Pool({ connectionString: env.OLD_DATABASE_URL, max: 1 });
        let writing = true;
        const writer = (async () => {
          for (let i = 0; writing; i++) {
            await application.query(`UPDATE ${quoteTable(table)} SET note = $1 WHERE id = 1`, [`app ${i}`]);
            await new Promise((resolve) => setTimeout(resolve, 20));
          }
        })();
        // Its failure is reported where it is awaited, after the backfill, not as an unhandled one.
        writer.catch(() => undefined);
        const backfill = await client.workflow.start(backfillTableWorkflow, {
          taskQueue: worker.taskQueue,
          workflowId: 'backfill-orders',
          args: [
            {
              migration: 'record',
              source: 'old',
              target: 'new',
              table,
              chunkSize: 50,
              partitions: 2,
              // One chunk per activity: enough events for the partitions to continue as new.
              chunksPerActivity: 1,
              hotRowsWhere: `status = 'paid'`,
              // The latency brake reads every second, and starts slowly whatever the table's size
              // when the application is busy; the nice ratio rests after each batch.
              throttle: {
                maxRowsPerSecond: 5000,
                latencyTarget: { intervalMs: 1000, slowStartMinRows: 0 },
                niceRatio: 0.1,
              },
            },
          ],
        });
        await backfill.signal(pauseSignal);
        await new Promise((resolve) => setTimeout(resolve, 500));
        await backfill.signal(resumeSignal);
        await backfill.signal(tuneSignal, { latencyRatio: 3, niceRatio: 0.2 });
        await pools.get('old').query(`UPDATE ${quoteTable(table)} SET status = 'live' WHERE id % 10 = 0`);
        await pools.get('old').query(`DELETE FROM ${quoteTable(table)} WHERE id % 15 = 0`);
        await backfill.result();
        writing = false;
        await writer;
        await application.end();
        // A few writes, less than a batch: a drain that catches up, then waits for entries to gather.
        await pools.get('old').query(`UPDATE ${quoteTable(table)} SET status = 'late' WHERE id % 97 = 0`);
        await new Promise((resolve) => setTimeout(resolve, 1000));
        await reconciliation.signal(discrepancySignal, { table, keys: [['1'], ['2']] });
        await reconciliation.signal(drainAndStopSignal);
        await reconciliation.result();
        // Verification finds and repairs a planted difference, continuing as new on the way.
        await pools.get('new').query(`DELETE FROM ${quoteTable(table)} WHERE id = 7`);
        const verification = await client.workflow.start(verificationWorkflow, {
          taskQueue: worker.taskQueue,
          workflowId: 'verify-orders',
          args: [
            {
              migration: 'record',
              table,
              from: 'old',
              to: 'new',
              chunkSize: 50,
              chunksPerActivity: 1,
              settleMs: 100,
            },
          ],
        });
        await verification.result();
        // The migration, end to end without routers: held for approval before the switch, rolled
        // back from switched (the reverse switch), forward again, the soak, and retire on approval.
        const migration = new MigrationControl(client, 'record');
        await startMigration(
          client,
          parseMigrationConfig({
            name: 'record',
            tables: ['public.orders'],
            chunkSize: 500,
            partitions: 2,
            cutover: { readSteps: [50, 100], stepSoak: 100, soak: '1s', approvals: ['switched'] },
            verification: { chunkSize: 1000, settle: 100 },
            queryBenchmark: { topStatements: 0 },
          }),
          worker.taskQueue,
        );
        await migration.throttle({ latencyRatio: 2.5, niceRatio: 0.1, copyPaused: false }, 'recorder');
        const heldFor = async (kind: string) => {
          for (;;) {
            const status = await migration.status();
            if (status.held?.kind === kind) return status;
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        };
        await heldFor('approval');
        await migration.approve('recorder');
        for (;;) {
          const status = await migration.status();
          if (status.stage === 'switched' || status.stage === 'complete') break;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
        await migration.rollback('live:100', 'recorder');
        await migration.resume();
        await heldFor('approval');
        await migration.approve('recorder');
        await heldFor('retire');
        await migration.approve('recorder');
        await migration.result();
        const progress = await backfill.query('backfillProgress');
        const children = (progress as { partitions: Array<{ workflowId: string }> }).partitions;
        return [
          backfill.workflowId,
          reconciliation.workflowId,
          verification.workflowId,
          migration.workflowId,
          reconciliationWorkflowId('record'),
          ...children.map((child) => child.workflowId),
        ];
      })(),
    );
    await pools.end();

    const release = path.join(
      historiesDir,
      process.env.HISTORIES_RELEASE ?? new Date().toISOString().slice(0, 10),
    );
    mkdirSync(release, { recursive: true });
    for (const file of readdirSync(release)) rmSync(path.join(release, file));
    for (const workflowId of workflowIds) {
      const runs = [];
      for await (const run of client.workflow.list({ query: `WorkflowId = '${workflowId}'` })) runs.push(run);
      runs.sort((a, b) => a.startTime.getTime() - b.startTime.getTime());
      for (const [index, run] of runs.entries()) {
        const history = await client.workflow.getHandle(workflowId, run.runId).fetchHistory();
        const file = path.join(release, historyFileName(workflowId, index + 1));
        writeFileSync(file, `${JSON.stringify(JSON.parse(historyToJSON(history)), null, 1)}\n`);
        logger.info(`saved ${file} (${history.events?.length ?? 0} events)`);
      }
    }
  } finally {
    await stack.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
