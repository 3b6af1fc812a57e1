// `npm run stack` on a taken port: a Temporal or Web UI port that another process holds (a plain
// TCP server, a real second Temporal dev server) is refused in one line that names the port and the
// setting to change, with exit code 1 and no stack trace; nothing of that attempt is left running,
// it never says "dev stack ready", and the process holding the port is left alone. Also when the
// port is taken after the stack's own check, before the Temporal CLI binds it (the race).
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { dataDir } from '../../provision/project-paths';
import { freePort } from '../../provision/ports';
import { startTemporalDevServer, type TemporalDevServer } from '../../provision/temporal-server';
import { servers } from '../harness/servers';
import { waitFor } from '../harness/wait';

const stackScript = path.join(__dirname, '..', '..', 'scripts', 'dev-stack.js');
const workDir = path.join(dataDir, 'test', 'dev-stack-ports');
/** A guard against a hang, not a measurement: a refusal comes in seconds. */
const ATTEMPT_LIMIT_MS = 180_000;
/** Every process of one attempt inherits this variable: how the leftovers are found. */
const ATTEMPT_VARIABLE = 'PG_LIVE_MIGRATE_PORT_TEST_ATTEMPT';

interface Attempt {
  code: number | null;
  output: string;
  marker: string;
}

function stackEnv(ports: { temporal: number; ui: number }, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    MIGRATE_STACK_DIR: path.join(workDir, `stack-${randomUUID().slice(0, 8)}`),
    TEMPORAL_PORT: String(ports.temporal),
    TEMPORAL_UI_PORT: String(ports.ui),
    TEMPORAL_CLI: servers.temporalCli,
    LOG_FORMAT: 'json',
    ...extra,
  };
  for (const name of [
    'TEMPORAL_ADDRESS',
    'OLD_DATABASE_URL',
    'NEW_DATABASE_URL',
    'MIGRATE_IGNORE_DEV_STACK',
  ]) {
    delete env[name];
  }
  return env;
}

/** Stacks still running when a test ends, say by a failed assertion: stopped in `after`. */
const runningStacks = new Set<ChildProcess>();

/** Runs the dev stack to its end. Should it come up, it is stopped at once (and the test fails). */
function runStack(env: NodeJS.ProcessEnv): Promise<Attempt> {
  const marker = randomUUID();
  const child = spawn(process.execPath, [stackScript], {
    env: { ...env, [ATTEMPT_VARIABLE]: marker },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  runningStacks.add(child);
  child.once('exit', () => runningStacks.delete(child));
  let output = '';
  const collect = (chunk: Buffer) => {
    output += chunk.toString();
    if (output.includes('dev stack ready')) child.kill('SIGINT');
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  return new Promise((resolve, reject) => {
    const guard = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the dev stack did not end:\n${output}`));
    }, ATTEMPT_LIMIT_MS);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(guard);
      resolve({ code, output, marker });
    });
  });
}

/** The messages the stack logged (LOG_FORMAT=json), one per line of its output that is a log record. */
function messages(output: string): string[] {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{"level"'))
    .map((line) => (JSON.parse(line) as { msg: string }).msg);
}

/** Processes still carrying the attempt's marker: what it started and left running (Linux /proc). */
function leftovers(marker: string): string[] {
  if (!existsSync('/proc/self/environ')) return [];
  const found: string[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const environ = readFileSync(`/proc/${entry}/environ`, 'utf8');
      if (environ.split('\0').includes(`${ATTEMPT_VARIABLE}=${marker}`)) {
        const command = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ').trim();
        found.push(`pid ${entry}: ${command}`);
      }
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

function assertRefused(attempt: Attempt, port: number, role: string, setting: string): void {
  const lines = messages(attempt.output);
  assert.equal(attempt.code, 1, attempt.output);
  assert.doesNotMatch(attempt.output, /dev stack ready/);
  assert.deepEqual(
    lines.filter((line) => /taken/.test(line)),
    [
      `the ${role} port ${port} is taken by another process (maybe another dev stack or Temporal server): ` +
        `stop that process, or set ${setting} to a free port`,
    ],
  );
  assert.equal(
    lines.at(-1),
    lines.find((line) => /taken/.test(line)),
    'the refusal is the last word',
  );
  assert.doesNotMatch(attempt.output, /^\s+at /m, 'no stack trace');
  assert.doesNotMatch(attempt.output, /bind: address already in use/, "not the CLI's raw error");
  assert.deepEqual(leftovers(attempt.marker), [], 'nothing of the attempt is left running');
}

/** A plain TCP server on `port`, as anything else on the machine might hold it. */
async function holdPort(port: number): Promise<net.Server> {
  const server = net.createServer((socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return server;
}

/**
 * A TEMPORAL_CLI that holds `server start-dev` at a gate until the test opens it: the stack's own
 * port check has passed by then, so the test can take the port in between, as another stack might.
 */
function gatedCli(gate: string): string {
  mkdirSync(gate, { recursive: true });
  const script = path.join(gate, 'temporal');
  writeFileSync(
    script,
    [
      '#!/bin/sh',
      'if [ "$1" = server ]; then',
      `  touch '${gate}/started'`,
      `  while [ ! -e '${gate}/open' ]; do sleep 0.05; done`,
      'fi',
      `exec '${servers.temporalCli}' "$@"`,
      '',
    ].join('\n'),
  );
  chmodSync(script, 0o755);
  return script;
}

describe('dev stack on a taken port', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  after(async () => {
    // Ctrl-C, as an operator would: the stack stops whatever it started (a gated CLI included).
    for (const child of runningStacks) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGINT');
      await exited;
    }
    for (const cleanup of cleanups.reverse()) await cleanup();
    rmSync(workDir, { recursive: true, force: true });
  });
  const closeAfter = (server: net.Server) =>
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const stopAfter = (temporal: TemporalDevServer) => cleanups.push(() => temporal.stop());

  it('refuses a Temporal port that a plain TCP server holds', async () => {
    const port = await freePort();
    const holder = await holdPort(port);
    closeAfter(holder);
    const attempt = await runStack(stackEnv({ temporal: port, ui: await freePort() }));
    assertRefused(attempt, port, 'Temporal', 'TEMPORAL_PORT');
    assert.equal(holder.listening, true, 'the holder is left alone');
  });

  it('refuses a Web UI port that a plain TCP server holds', async () => {
    const uiPort = await freePort();
    closeAfter(await holdPort(uiPort));
    const attempt = await runStack(stackEnv({ temporal: await freePort(), ui: uiPort }));
    assertRefused(attempt, uiPort, 'Temporal Web UI', 'TEMPORAL_UI_PORT');
  });

  it('refuses a Temporal port that a second Temporal dev server holds, and leaves that server running', async () => {
    const other = await startTemporalDevServer({ cliPath: servers.temporalCli, port: await freePort() });
    stopAfter(other);
    const port = Number(other.address.split(':')[1]);
    const attempt = await runStack(stackEnv({ temporal: port, ui: await freePort() }));
    assertRefused(attempt, port, 'Temporal', 'TEMPORAL_PORT');
    await other.environment.connection.workflowService.describeNamespace({ namespace: 'default' });
  });

  it('refuses a Temporal port that a second Temporal dev server takes after the check (the race)', async () => {
    const gate = path.join(workDir, `gate-${randomUUID().slice(0, 8)}`);
    const port = await freePort();
    const attempt = runStack(
      stackEnv({ temporal: port, ui: await freePort() }, { TEMPORAL_CLI: gatedCli(gate) }),
    );
    await waitFor('the stack to start the Temporal CLI', () =>
      Promise.resolve(existsSync(`${gate}/started`)),
    );
    const other = await startTemporalDevServer({ cliPath: servers.temporalCli, port });
    stopAfter(other);
    writeFileSync(`${gate}/open`, '');
    assertRefused(await attempt, port, 'Temporal', 'TEMPORAL_PORT');
    await other.environment.connection.workflowService.describeNamespace({ namespace: 'default' });
  });

  it('refuses a Web UI port taken after the check (the race)', async () => {
    const gate = path.join(workDir, `gate-${randomUUID().slice(0, 8)}`);
    const uiPort = await freePort();
    const attempt = runStack(
      stackEnv({ temporal: await freePort(), ui: uiPort }, { TEMPORAL_CLI: gatedCli(gate) }),
    );
    await waitFor('the stack to start the Temporal CLI', () =>
      Promise.resolve(existsSync(`${gate}/started`)),
    );
    closeAfter(await holdPort(uiPort));
    writeFileSync(`${gate}/open`, '');
    assertRefused(await attempt, uiPort, 'Temporal Web UI', 'TEMPORAL_UI_PORT');
  });
});
