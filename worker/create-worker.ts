// Builds a worker for a site: connects to Temporal, resolves the database connections from this
// process's environment, and registers the workflows and activities.
import { NativeConnection, Worker } from '@temporalio/worker';
import { createActivities, type ActivityHooks } from '../activities';
import type { ActivityMetrics } from '../activities/metrics';
import { ConnectionPools } from '../db/pools';
import { resolveConnections } from '../config/connections';
import type { SiteConfig } from '../config/schema';
import { resolveTemporalSettings } from '../config/temporal';
import { activityLogAttributes } from './activity-log-attributes';
import { bundleWorkflows } from './bundle';

export interface MigrationWorker {
  worker: Worker;
  taskQueue: string;
  /** Runs until shutdown is requested, then closes the pools and the connection. */
  run(): Promise<void>;
  /** Runs until `work` settles, shuts down, then closes the pools and the connection. */
  runUntil<T>(work: Promise<T>): Promise<T>;
}

export async function createMigrationWorker(
  site: SiteConfig,
  env: NodeJS.ProcessEnv,
  overrides: { taskQueue?: string; metrics?: ActivityMetrics } & ActivityHooks = {},
): Promise<MigrationWorker> {
  const temporal = resolveTemporalSettings(site, env);
  const pools = new ConnectionPools(resolveConnections(site, env));
  const connection = await NativeConnection.connect({
    address: temporal.address,
    ...(temporal.tls !== undefined && { tls: temporal.tls }),
    ...(temporal.apiKey !== undefined && { apiKey: temporal.apiKey }),
  });
  const taskQueue = overrides.taskQueue ?? temporal.taskQueue;
  try {
    const worker = await Worker.create({
      connection,
      namespace: temporal.namespace,
      taskQueue,
      workflowBundle: await bundleWorkflows(),
      activities: createActivities({
        pools,
        ...(overrides.metrics !== undefined && { metrics: overrides.metrics }),
        ...(overrides.copierHooks !== undefined && { copierHooks: overrides.copierHooks }),
        ...(overrides.verifierHooks !== undefined && { verifierHooks: overrides.verifierHooks }),
      }),
      interceptors: { activity: [activityLogAttributes] },
      shutdownGraceTime: site.worker.shutdownGraceTime as `${number}s`,
      ...(site.worker.maxConcurrentActivityTaskExecutions !== undefined && {
        maxConcurrentActivityTaskExecutions: site.worker.maxConcurrentActivityTaskExecutions,
      }),
      ...(site.worker.maxConcurrentWorkflowTaskExecutions !== undefined && {
        maxConcurrentWorkflowTaskExecutions: site.worker.maxConcurrentWorkflowTaskExecutions,
      }),
    });
    const closeAfter = async <T>(running: Promise<T>): Promise<T> => {
      try {
        return await running;
      } finally {
        await pools.end();
        await connection.close();
      }
    };
    return {
      worker,
      taskQueue,
      run: () => closeAfter(worker.run()),
      runUntil: (work) => closeAfter(worker.runUntil(work)),
    };
  } catch (err) {
    await pools.end();
    await connection.close();
    throw err;
  }
}
