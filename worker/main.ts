#!/usr/bin/env node
// Worker process entry: installs the Runtime with the pino logger, runs the worker, and drains on
// SIGINT/SIGTERM (the Runtime turns those signals into a graceful worker shutdown).
import { OperatorError } from '../model/errors';
import { loadSiteConfig } from '../config/load';
import { redactSecrets } from '../model/redact';
import { createMigrationWorker } from './create-worker';
import { createLogger } from '../db/logger';
import { installRuntime, WORKER_SHUTDOWN_SIGNALS } from './runtime';

async function main(): Promise<void> {
  const logger = createLogger({ name: 'worker' });
  const configFile = process.env.MIGRATE_CONFIG ?? argValue('--config');
  try {
    installRuntime(logger, WORKER_SHUTDOWN_SIGNALS);
    const site = loadSiteConfig(configFile);
    const worker = await createMigrationWorker(site, process.env);
    logger.info(
      { taskQueue: worker.taskQueue },
      'worker started; SIGINT or SIGTERM drains in-flight work and stops',
    );
    await worker.run();
    logger.info('worker stopped');
  } catch (err) {
    const message =
      err instanceof OperatorError ? err.message : `worker failed: ${redactSecrets(String(err))}`;
    logger.error(message);
    process.exitCode = 1;
  }
}

function argValue(flag: string): string | undefined {
  const index = process.argv.indexOf(flag);
  return index >= 0 ? process.argv[index + 1] : undefined;
}

void main();
