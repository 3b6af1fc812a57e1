#!/usr/bin/env node
// `npm run stack`: the embedded dev stack. Starts the Temporal dev server (SQLite file, Web UI on
// :8233, search attributes registered), the old and new PostgreSQL clusters and a worker; Ctrl-C
// stops all of them. A second run reuses the same data. A Temporal or Web UI port that another
// process holds (another checkout's stack, a Temporal server) is refused in one line, exit code 1.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { OperatorError } from '../model/errors';
import { redactSecrets, displayUrl } from '../model/redact';
import { startLocalStack, type LocalStack } from '../provision/local-stack';
import { devStackRoot, publishRunningStack, unpublishRunningStack } from '../provision/running-stack';
import { APPLICATION_ROLE, parsePostgresMajor } from '../provision/postgres';
import { createLogger } from '../db/logger';
import { installRuntime } from '../worker/runtime';

const logger = createLogger({ name: 'stack' });

function portFromEnv(name: string, fallback: number): number {
  const value = process.env[name];
  if (value === undefined || value === '') return fallback;
  const port = Number(value);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new OperatorError(`${name} is ${value}; it must be a TCP port number`);
  }
  return port;
}

export const DEFAULT_TEMPORAL_PORT = 7233;
export const DEFAULT_TEMPORAL_UI_PORT = 8233;

async function main(): Promise<void> {
  let stack: LocalStack | undefined;
  let worker: ChildProcess | undefined;
  let stopping = false;

  const shutdown = async (reason: string, exitCode: number) => {
    if (stopping) return;
    stopping = true;
    logger.info(`stopping the dev stack (${reason})`);
    if (worker !== undefined && worker.exitCode === null && worker.signalCode === null) {
      const exited = new Promise((resolve) => worker?.once('exit', resolve));
      worker.kill('SIGTERM');
      await exited;
    }
    unpublishRunningStack(devStackRoot);
    await stack?.stop();
    logger.info('dev stack stopped');
    process.exit(exitCode);
  };
  installRuntime(logger, []);
  process.on('SIGINT', () => void shutdown('SIGINT', 0));
  process.on('SIGTERM', () => void shutdown('SIGTERM', 0));

  try {
    stack = await startLocalStack({
      root: devStackRoot,
      persistent: true,
      oldMajor: parsePostgresMajor(process.env.OLD_PG_MAJOR, 15, 'OLD_PG_MAJOR'),
      newMajor: parsePostgresMajor(process.env.NEW_PG_MAJOR, 17, 'NEW_PG_MAJOR'),
      temporalPort: portFromEnv('TEMPORAL_PORT', DEFAULT_TEMPORAL_PORT),
      temporalUiPort: portFromEnv('TEMPORAL_UI_PORT', DEFAULT_TEMPORAL_UI_PORT),
      portSettings: { temporal: 'TEMPORAL_PORT', ui: 'TEMPORAL_UI_PORT' },
      log: (message) => logger.info(message),
    });
    if (stopping) return;
    worker = spawn(process.execPath, [path.join(__dirname, '..', 'worker', 'main.js')], {
      env: { ...process.env, ...stack.env },
      stdio: 'inherit',
    });
    worker.once('exit', (code, signal) => {
      if (!stopping) void shutdown(`the worker exited (${signal ?? `code ${code}`})`, 1);
    });
    publishRunningStack(devStackRoot, stack);
    const lines = [
      'dev stack ready',
      `  Temporal       ${stack.temporal.address}, Web UI ${stack.temporal.uiUrl ?? 'off'}`,
      `  old database   ${displayUrl(stack.old.url)} (PostgreSQL ${stack.old.major})`,
      `  new database   ${displayUrl(stack.new.url)} (PostgreSQL ${stack.new.major})`,
      `  application    connect routers and your own writers as role ${APPLICATION_ROLE} (same password): ${displayUrl(stack.old.appUrl)}`,
      `  worker         pid ${worker.pid ?? '?'}`,
      '  `npm run migrate -- doctor` in another terminal checks them; Ctrl-C stops everything',
    ];
    logger.info(lines.join('\n'));
  } catch (err) {
    logger.error(
      err instanceof OperatorError
        ? err.message
        : `the dev stack failed to start: ${redactSecrets(String(err))}`,
    );
    // startLocalStack stopped what it had started: with no stack, the failure is the one line.
    if (stack === undefined && worker === undefined) process.exit(1);
    await shutdown('start failed', 1);
  }
}

void main();
