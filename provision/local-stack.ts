// The embedded default: a Temporal dev server and two real PostgreSQL clusters ("old" and "new"),
// started together and stopped together. The dev stack, the demo and the test run all use it.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { isPortFree, refuseTakenPort } from './ports';
import { writePrivateJson } from './running-stack';
import { startEmbeddedCluster, type EmbeddedCluster, type PostgresMajor } from './postgres';
import { findOrInstallTemporalCli, type TemporalCli } from './temporal-cli';
import {
  startTemporalDevServer,
  TEMPORAL_ROLE,
  TEMPORAL_UI_ROLE,
  type TemporalDevServer,
} from './temporal-server';

export interface LocalStackOptions {
  /** Folder for this stack's data: .data/stack, .data/demo, .data/test. */
  root: string;
  /** Keep data, ports and password across runs (dev stack); otherwise start empty and delete on stop. */
  persistent: boolean;
  oldMajor: PostgresMajor;
  newMajor: PostgresMajor;
  /**
   * Temporal's port and the Web UI's (no UI when unset). A taken port is refused before anything
   * starts, never attached to; unset, Temporal gets a free port chosen at start.
   */
  temporalPort?: number;
  temporalUiPort?: number;
  /** The settings that chose those ports (e.g. TEMPORAL_PORT), named when one is refused. */
  portSettings?: { temporal?: string; ui?: string };
  postgresSettings?: Record<string, string>;
  /** Temporal server dynamic config (the tests make continue-as-new come early). */
  temporalDynamicConfig?: Record<string, string | number | boolean>;
  log: (message: string) => void;
}

export interface LocalStack {
  cli: TemporalCli;
  temporal: TemporalDevServer;
  old: EmbeddedCluster;
  new: EmbeddedCluster;
  /** The environment a worker or the CLI needs to reach this stack. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

interface SavedState {
  password: string;
  oldPort: number;
  newPort: number;
}

async function choosePort(saved: number | undefined): Promise<number | undefined> {
  return saved !== undefined && (await isPortFree(saved)) ? saved : undefined;
}

function readState(file: string): Partial<SavedState> {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Partial<SavedState>;
  } catch {
    return {};
  }
}

export async function startLocalStack(options: LocalStackOptions): Promise<LocalStack> {
  const { root, log } = options;
  // A requested port that is taken is refused before anything starts (startTemporalDevServer
  // checks again, and makes sure the server answering there is its own).
  const settings = options.portSettings ?? {};
  if (options.temporalPort !== undefined) {
    await refuseTakenPort(options.temporalPort, TEMPORAL_ROLE, settings.temporal);
  }
  if (options.temporalUiPort !== undefined) {
    await refuseTakenPort(options.temporalUiPort, TEMPORAL_UI_ROLE, settings.ui);
  }
  if (!options.persistent) rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  const stateFile = path.join(root, 'state.json');
  const saved = options.persistent ? readState(stateFile) : {};
  const password = saved.password ?? randomBytes(18).toString('base64url');

  const started: { label: string; stop(): Promise<void> }[] = [];
  const stopAll = async () => {
    for (const part of [...started].reverse()) {
      try {
        await part.stop();
        log(`${part.label}: stopped`);
      } catch (err) {
        log(`${part.label}: did not stop cleanly: ${(err as Error).message}`);
      }
    }
    started.length = 0;
  };
  try {
    const cli = await findOrInstallTemporalCli({ log });
    log(
      `temporal: starting the dev server${options.persistent ? ` with ${path.join(root, 'temporal.sqlite')}` : ''}`,
    );
    const temporal = await startTemporalDevServer({
      cliPath: cli.path,
      ...(options.temporalPort !== undefined && { port: options.temporalPort }),
      ...(options.temporalUiPort !== undefined && { uiPort: options.temporalUiPort }),
      portSettings: { port: settings.temporal, uiPort: settings.ui },
      ...(options.persistent && { dbFilename: path.join(root, 'temporal.sqlite') }),
      ...(options.temporalDynamicConfig !== undefined && { dynamicConfig: options.temporalDynamicConfig }),
    });
    started.push({ label: 'temporal', stop: () => temporal.stop() });
    log(
      `temporal: dev server ready at ${temporal.address}${temporal.uiUrl ? `, Web UI at ${temporal.uiUrl}` : ''}`,
    );

    const onLeftover = options.persistent ? 'fail' : 'stop';
    const clusterOptions = { password, onLeftover, log, settings: options.postgresSettings } as const;
    const [oldCluster, newCluster] = await Promise.all([
      startEmbeddedCluster({
        ...clusterOptions,
        name: 'old',
        major: options.oldMajor,
        dataDir: path.join(root, `old-pg${options.oldMajor}`),
        port: await choosePort(saved.oldPort),
      }),
      startEmbeddedCluster({
        ...clusterOptions,
        name: 'new',
        major: options.newMajor,
        dataDir: path.join(root, `new-pg${options.newMajor}`),
        port: await choosePort(saved.newPort),
      }),
    ]);
    started.push(
      { label: 'old', stop: () => oldCluster.stop() },
      { label: 'new', stop: () => newCluster.stop() },
    );
    if (options.persistent) {
      writePrivateJson(stateFile, { password, oldPort: oldCluster.port, newPort: newCluster.port });
    }
    const env = {
      TEMPORAL_ADDRESS: temporal.address,
      TEMPORAL_NAMESPACE: temporal.namespace,
      OLD_DATABASE_URL: oldCluster.url,
      NEW_DATABASE_URL: newCluster.url,
    };
    // A signal handler and a finally block may both stop the stack: both wait for the one stop.
    let stopping: Promise<void> | undefined;
    return {
      cli,
      temporal,
      old: oldCluster,
      new: newCluster,
      env,
      stop() {
        stopping ??= (async () => {
          await stopAll();
          if (!options.persistent) rmSync(root, { recursive: true, force: true });
        })();
        return stopping;
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
