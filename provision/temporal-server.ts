// Starts the Temporal CLI's dev server as a child process of ours, with the project's search
// attributes registered, and makes sure that the server answering on its port is that child. Used by
// the dev stack (fixed ports, SQLite file, Web UI), the demo, the benchmarks and the tests.
//
// Not TestWorkflowEnvironment.createLocal: the SDK spawns the CLI, then polls the port until
// something there answers gRPC. When the port was taken, the CLI exited with "bind: address already
// in use" while the poll succeeded against the other server, and a second stack silently attached
// to the first one's Temporal. Here the child, its exit and its output are ours to watch.
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import { TypedSearchAttributes } from '@temporalio/common';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { SEARCH_ATTRIBUTES } from '../workflows/search-attributes';
import { freePort, groupListensOn, portInUseIn, PortTakenError, refuseTakenPort } from './ports';

export interface TemporalDevServerOptions {
  cliPath: string;
  /** Refused when taken; a free port chosen at start when unset. */
  port?: number;
  /** Serve the Web UI on this port (refused when taken); no UI when unset. */
  uiPort?: number;
  /** The settings that chose `port` and `uiPort` (e.g. TEMPORAL_PORT), named when one is refused. */
  portSettings?: { port?: string; uiPort?: string };
  /** Persist to this SQLite file; in memory when unset. */
  dbFilename?: string;
  namespace?: string;
  /** Server dynamic config, e.g. { 'limit.historyCount.suggestContinueAsNew': 200 } in tests. */
  dynamicConfig?: Record<string, string | number | boolean>;
}

export interface TemporalDevServer {
  address: string;
  namespace: string;
  uiUrl?: string;
  /** The CLI process; it leads a process group of its own. */
  pid: number;
  environment: TestWorkflowEnvironment;
  stop(): Promise<void>;
}

export const TEMPORAL_ROLE = 'Temporal';
export const TEMPORAL_UI_ROLE = 'Temporal Web UI';

/** A guard against a hang, not a measurement: the dev server normally starts in a second or two. */
const STARTUP_LIMIT_MS = 120_000;
/**
 * How long a server with a SQLite file gets to stop on SIGTERM before it is killed. It commits every
 * write before answering it, so a kill loses nothing; waiting longer (it may wait for pollers that
 * are gone) only keeps the operator waiting.
 */
const STOP_GRACE_MS = 5_000;
/** How often a port we picked (never a requested one) is picked again after losing it to a race. */
const ATTEMPTS = 3;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Servers still running: stopped when this process exits without stopping them (a crash, process.exit). */
const running = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of running) signalGroup(child, 'SIGTERM');
});

/** The child leads its own process group (spawned detached): signal it and anything it started. */
function signalGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // the group is gone already
  }
}

function exited(child: ChildProcess): boolean {
  return child.exitCode !== null || child.signalCode !== null;
}

function cliArgs(options: TemporalDevServerOptions, port: number, namespace: string): string[] {
  return [
    ...['server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port), '--namespace', namespace],
    ...['--log-format', 'json', '--log-level', 'warn'],
    // What the SDK's createLocal passed: updates on (the workflows rely on them), no version check.
    ...['--dynamic-config-value', 'frontend.enableServerVersionCheck=false'],
    ...['--dynamic-config-value', 'frontend.enableUpdateWorkflowExecution=true'],
    ...['--dynamic-config-value', 'frontend.enableUpdateWorkflowExecutionAsyncAccepted=true'],
    ...SEARCH_ATTRIBUTES.flatMap((key) => [
      '--search-attribute',
      `${key.name}=${TypedSearchAttributes.toMetadataType(key.type)}`,
    ]),
    ...(options.uiPort !== undefined
      ? ['--ui-port', String(options.uiPort), '--ui-disable-news-fetch']
      : ['--headless']),
    ...(options.dbFilename !== undefined ? ['--db-filename', options.dbFilename] : []),
    ...Object.entries(options.dynamicConfig ?? {}).flatMap(([key, value]) => [
      '--dynamic-config-value',
      `${key}=${JSON.stringify(value)}`,
    ]),
  ];
}

/**
 * Whether start-dev's banner shows `port` on its `label` line: "Temporal Server:  localhost:7233",
 * "Temporal UI:  http://localhost:8233" (CLI 1.x; "Server:" and "UI:" in earlier releases).
 */
export function bannerShows(stdout: string, label: 'Server' | 'UI', port: number): boolean {
  return new RegExp(`^\\s*(Temporal )?${label}:\\s+\\S*:${port}(/\\S*)?\\s*$`, 'm').test(stdout);
}

/**
 * The child's output, kept (its last lines) for a failure message. Once the server is up, its log
 * (stderr: warnings and errors) goes on to ours; its stdout, only the banner with "localhost"
 * addresses, does not (we print the address ourselves).
 */
class ChildOutput {
  stdout = '';
  forward = false;
  /** Both streams as they came, the last few kB: a line split across chunks stays whole. */
  text = '';

  constructor(child: ChildProcess) {
    this.collect(child.stdout, undefined);
    this.collect(child.stderr, process.stderr);
  }

  private collect(stream: Readable | null, to: NodeJS.WriteStream | undefined): void {
    stream?.on('data', (chunk: Buffer) => {
      const text = chunk.toString('utf8');
      if (this.forward) {
        to?.write(text);
        return;
      }
      if (to === undefined) this.stdout += text;
      this.text = (this.text + text).slice(-16_384);
    });
  }

  /** The last lines, on one line, for an error message. */
  tail(count = 3): string {
    const lines = this.text.split('\n').filter((line) => line.trim() !== '');
    return lines.slice(-count).join(' | ') || 'no output';
  }
}

async function startOnce(
  options: TemporalDevServerOptions,
  port: number,
  portWasChosen: boolean,
): Promise<TemporalDevServer> {
  const namespace = options.namespace ?? 'default';
  const settings = options.portSettings ?? {};
  const refusal = (taken: number) =>
    taken === options.uiPort
      ? new PortTakenError(taken, TEMPORAL_UI_ROLE, settings.uiPort)
      : new PortTakenError(
          taken,
          TEMPORAL_ROLE,
          taken === port && !portWasChosen ? settings.port : undefined,
        );

  // The first refusal, before anything starts: a port that something already listens on.
  await refuseTakenPort(port, TEMPORAL_ROLE, portWasChosen ? undefined : settings.port);
  if (options.uiPort !== undefined) await refuseTakenPort(options.uiPort, TEMPORAL_UI_ROLE, settings.uiPort);

  const child = spawn(options.cliPath, cliArgs(options, port, namespace), {
    stdio: ['ignore', 'pipe', 'pipe'],
    // A process group of its own: stop() reaches whatever the CLI starts, and a Ctrl-C in the
    // terminal does not stop Temporal under a draining worker (the owner stops it, in order).
    detached: true,
  });
  if (child.pid === undefined) {
    const err = await new Promise<Error>((resolve) => child.once('error', resolve));
    throw new Error(`cannot run the temporal CLI at ${options.cliPath}: ${err.message}`);
  }
  const pid = child.pid;
  running.add(child);
  const output = new ChildOutput(child);
  const exit = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let environment: TestWorkflowEnvironment | undefined;

  const stopChild = async () => {
    output.forward = false;
    if (!exited(child)) {
      child.ref(); // waiting for its exit keeps this process alive
      // A server with a SQLite file shuts down cleanly (a second or two); one in memory has
      // nothing to keep, so it is killed at once, as the SDK did.
      let grace: NodeJS.Timeout | undefined;
      if (options.dbFilename !== undefined) {
        signalGroup(child, 'SIGTERM');
        await Promise.race([exit, new Promise((resolve) => (grace = setTimeout(resolve, STOP_GRACE_MS)))]);
        clearTimeout(grace);
      }
      // Whatever of the group is still there: the CLI past its grace, or anything it started.
      signalGroup(child, 'SIGKILL');
      await exit;
    }
    running.delete(child);
  };
  const failure = (): Error => {
    const taken = portInUseIn(output.text);
    if (taken !== undefined) return refusal(taken);
    return new Error(
      `the Temporal dev server exited with ${child.signalCode ?? `code ${child.exitCode}`} before it was ready: ${output.tail()}`,
    );
  };
  /**
   * Whether the child holds the listening sockets of `port` (and the Web UI port). On Linux /proc
   * says which process holds a listening socket: the kernel's answer, whatever the CLI prints.
   * Elsewhere, start-dev's banner: printed only once its servers are up, and a bind failure ends the
   * process before it; a banner from a child still alive means the child holds the ports.
   */
  const holdsPorts = () =>
    [
      { label: 'Server', at: port } as const,
      ...(options.uiPort !== undefined ? [{ label: 'UI', at: options.uiPort } as const] : []),
    ].every(({ label, at }) => groupListensOn(pid, at) ?? bannerShows(output.stdout, label, at));

  try {
    // How the race between the check above and the child's bind is closed: the server answering on
    // the port counts as ours only when (1) the child holds the listening socket, (2) a gRPC call
    // through our connection then succeeds, and (3) the child is then still alive and still holds
    // it. A listening socket is exclusive (the CLI binds without SO_REUSEPORT), so from (1) to (3)
    // nothing else can answer there. A child that lost a port to another process exits (at the
    // CLI's own check, at the frontend's bind or at the UI's bind); its "bind: address already in
    // use" names the port in the refusal. "Something answers gRPC there", the SDK's test, is not
    // proof: that is how a second stack attached to the first one's server.
    const deadline = Date.now() + STARTUP_LIMIT_MS;
    while (!holdsPorts()) {
      if (exited(child)) throw failure();
      if (Date.now() > deadline) throw new Error(`the Temporal dev server did not start: ${output.tail()}`);
      await Promise.race([exit, sleep(100)]);
    }
    const address = `127.0.0.1:${port}`;
    for (;;) {
      try {
        environment ??= await TestWorkflowEnvironment.createFromExistingServer({ address, namespace });
        await environment.connection.workflowService.describeNamespace({ namespace });
        break;
      } catch (err) {
        if (exited(child)) throw failure();
        if (Date.now() > deadline) throw err;
        await sleep(200);
      }
    }
    if (exited(child)) throw failure();
    if (!holdsPorts()) throw new Error(`the Temporal dev server (pid ${pid}) let go of its ports`);

    output.forward = true;
    // These handles do not keep this process alive; the exit hook above stops the server.
    child.unref();
    (child.stdout as Socket | null)?.unref();
    (child.stderr as Socket | null)?.unref();
    const ready = environment;
    let stopping: Promise<void> | undefined;
    return {
      address,
      namespace,
      ...(options.uiPort !== undefined && { uiUrl: `http://127.0.0.1:${options.uiPort}` }),
      pid,
      environment: ready,
      stop() {
        stopping ??= (async () => {
          await ready.teardown();
          await stopChild();
        })();
        return stopping;
      },
    };
  } catch (err) {
    await environment?.teardown().catch(() => undefined);
    await stopChild();
    throw err;
  }
}

export async function startTemporalDevServer(options: TemporalDevServerOptions): Promise<TemporalDevServer> {
  for (let attempt = 1; ; attempt++) {
    const chosen = options.port === undefined;
    const port = options.port ?? (await freePort());
    try {
      return await startOnce(options, port, chosen);
    } catch (err) {
      // A port we picked (ours, or the HTTP and metrics ports the CLI picks) was taken between the
      // pick and the bind: pick again. A requested port is refused, never swapped for another.
      const lostPickedPort =
        err instanceof PortTakenError && err.port !== options.uiPort && (chosen || err.port !== port);
      if (!lostPickedPort || attempt >= ATTEMPTS) throw err;
    }
  }
}
