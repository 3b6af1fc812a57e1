// What a running dev stack publishes for `migrate` commands started from the same checkout, and how
// they read it. Apart from local-stack.ts so that the CLI, which only reads it, loads none of the
// embedded default (Temporal's test server, embedded PostgreSQL): those are dev dependencies, absent
// where the package is installed.
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { dataDir } from './project-paths';

/** What a running dev stack publishes for `migrate` commands started in another terminal. */
export interface RunningStackFile {
  pid: number;
  /** The stack's current worker process (it is restarted when it dies). */
  workerPid?: number;
  env: Record<string, string>;
  uiUrl?: string;
}

/** The dev stack's folder; MIGRATE_STACK_DIR moves it (the tests run a second stack beside yours). */
export const devStackRoot = process.env.MIGRATE_STACK_DIR ?? path.join(dataDir, 'stack');
const RUNNING_FILE = 'running.json';

/** Writes JSON only its owner can read: the stack's files hold the databases' password. */
export function writePrivateJson(file: string, value: unknown): void {
  writeFileSync(file, JSON.stringify(value, null, 2), { mode: 0o600 });
  chmodSync(file, 0o600);
}

export function publishRunningStack(
  root: string,
  stack: { env: Record<string, string>; temporal: { uiUrl?: string } },
  workerPid?: number,
): void {
  const file: RunningStackFile = {
    pid: process.pid,
    ...(workerPid !== undefined && { workerPid }),
    env: stack.env,
    ...(stack.temporal.uiUrl !== undefined && { uiUrl: stack.temporal.uiUrl }),
  };
  writePrivateJson(path.join(root, RUNNING_FILE), file);
}

export function unpublishRunningStack(root: string): void {
  rmSync(path.join(root, RUNNING_FILE), { force: true });
}

/** The environment of the dev stack running from this checkout, if one is running. */
export function readRunningStack(root = devStackRoot): RunningStackFile | undefined {
  const file = path.join(root, RUNNING_FILE);
  if (!existsSync(file)) return undefined;
  try {
    const running = JSON.parse(readFileSync(file, 'utf8')) as RunningStackFile;
    process.kill(running.pid, 0);
    return running;
  } catch {
    return undefined;
  }
}
