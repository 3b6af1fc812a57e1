#!/usr/bin/env node
// Worker process entry: checks its settings, installs the Runtime with the pino logger, runs the
// worker, and obeys SIGINT/SIGTERM at any moment: while it starts (connecting to Temporal, say) it
// stops at once; once it runs, it drains in-flight work and stops; a second signal stops it at once.
// A worker that cannot start says why in one line (never a password) and exits with code 1.
import { OperatorError } from '../model/errors';
import { loadSiteConfig } from '../config/load';
import { resolveConnections } from '../config/connections';
import { resolveTemporalSettings } from '../config/temporal';
import { METRICS_PORT_FLAG, resolveMetricsPort } from '../config/metrics';
import { redactSecrets } from '../model/redact';
import { createMigrationWorker, type MigrationWorker } from './create-worker';
import { createLogger } from '../db/logger';
import { installRuntime } from './runtime';
import { WorkerMetrics } from './metrics';
import { startMetricsServer, type MetricsServer } from './metrics-server';

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGUSR2'];
const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = { SIGINT: 2, SIGTERM: 15, SIGQUIT: 3 };

async function main(): Promise<number> {
  const logger = createLogger({ name: 'worker' });
  const configFile = process.env.MIGRATE_CONFIG ?? argValue('--config');
  let worker: MigrationWorker | undefined;
  let metricsServer: MetricsServer | undefined;
  let draining = false;
  for (const signal of SIGNALS) {
    process.on(signal, () => {
      if (worker === undefined) {
        logger.info(`worker stopped by ${signal} before it started`);
        process.exit(128 + (SIGNAL_NUMBERS[signal] ?? 0));
      }
      if (draining) {
        logger.warn(`worker stopped by a second ${signal} without waiting for in-flight work`);
        process.exit(128 + (SIGNAL_NUMBERS[signal] ?? 0));
      }
      draining = true;
      logger.info(`${signal}: draining in-flight work, then stopping (a second signal stops at once)`);
      worker.worker.shutdown();
    });
  }
  try {
    const site = loadSiteConfig(configFile);
    // Every setting is checked before anything connects: a malformed URL is one line and exit 1.
    resolveConnections(site, process.env);
    const temporal = resolveTemporalSettings(site, process.env);
    const metricsPort = resolveMetricsPort(site, process.env, argValue(METRICS_PORT_FLAG));
    // A taken metrics port is refused before anything connects.
    const metrics = metricsPort === null ? undefined : new WorkerMetrics();
    if (metrics !== undefined && metricsPort !== null) {
      metricsServer = await startMetricsServer(metricsPort, metrics.registry);
    }
    installRuntime(logger, [], {
      ...(metricsServer !== undefined && { sdkMetricsAddress: metricsServer.sdkAddress }),
    });
    let created: MigrationWorker;
    try {
      created = await createMigrationWorker(site, process.env, {
        ...(metrics !== undefined && { metrics }),
      });
    } catch (err) {
      if (err instanceof OperatorError) throw err;
      const detail = firstLine(err);
      throw new OperatorError(
        /Connection refused|tcp connect error|dns error/i.test(detail)
          ? `worker cannot start: Temporal at ${temporal.address} is not reachable (${/refused/i.test(detail) ? 'connection refused' : 'cannot connect'}): start it, or set TEMPORAL_ADDRESS or temporal.address`
          : `worker cannot start: Temporal at ${temporal.address} (namespace ${temporal.namespace}) did not take it: ${detail}`,
      );
    }
    worker = created;
    logger.info(
      {
        taskQueue: worker.taskQueue,
        ...(metricsServer !== undefined && { metricsPort: metricsServer.port }),
      },
      'worker started; SIGINT or SIGTERM drains in-flight work and stops',
    );
    await worker.run();
    logger.info('worker stopped');
    return 0;
  } catch (err) {
    logger.error(
      err instanceof OperatorError ? redactSecrets(err.message) : `worker failed: ${firstLine(err)}`,
    );
    return 1;
  } finally {
    await metricsServer?.close();
  }
}

function firstLine(err: unknown): string {
  const text = err instanceof Error ? `${err.message}` : String(err);
  return redactSecrets(text.split('\n')[0] ?? '');
}

function argValue(flag: string): string | undefined {
  const index = process.argv.indexOf(flag);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

// The Runtime's native threads would keep the process alive after a failure: exit explicitly.
void main().then((code) => process.exit(code));
