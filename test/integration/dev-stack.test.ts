// `npm run stack`: Temporal dev server with the Web UI, both databases and a worker come up; the Web
// UI answers over HTTP; doctor finds the running stack by itself; Ctrl-C (SIGINT) stops everything;
// a second run reuses the data of the first. A worker that dies is restarted while the servers stay;
// Ctrl-C in a terminal (SIGINT to the whole process group) stops the worker before the servers.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import type { RunningStackFile } from '../../provision/running-stack';
import { dataDir } from '../../provision/project-paths';
import { freePort, isPortFree } from '../../provision/ports';
import { runCli } from '../harness/cli';
import { servers } from '../harness/servers';
import { waitFor, waitUntil } from '../harness/wait';

const stackScript = path.join(__dirname, '..', '..', 'scripts', 'dev-stack.js');
const stackDir = path.join(dataDir, 'test', 'dev-stack');
const STARTUP_LIMIT_MS = 180_000;

interface RunningStack {
  child: ChildProcess;
  output: () => string;
  running: RunningStackFile;
}

function stackEnv(ports: { temporal: number; ui: number }): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    MIGRATE_STACK_DIR: stackDir,
    TEMPORAL_PORT: String(ports.temporal),
    TEMPORAL_UI_PORT: String(ports.ui),
    TEMPORAL_CLI: servers.temporalCli,
    LOG_FORMAT: 'json',
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

function startStack(env: NodeJS.ProcessEnv, ownGroup = false): Promise<RunningStack> {
  // ownGroup: a process group of its own, as a terminal's foreground job, so Ctrl-C can be sent to it.
  const child = spawn(process.execPath, [stackScript], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: ownGroup,
  });
  let output = '';
  const collect = (chunk: Buffer) => (output += chunk.toString());
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  return new Promise((resolve, reject) => {
    // A guard against a hang, not a measurement: the stack normally starts in seconds.
    const guard = setTimeout(
      () => reject(new Error(`the stack did not start:\n${output}`)),
      STARTUP_LIMIT_MS,
    );
    const check = () => {
      if (output.includes('dev stack ready')) {
        clearTimeout(guard);
        child.stdout?.off('data', check);
        const running = JSON.parse(
          readFileSync(path.join(stackDir, 'running.json'), 'utf8'),
        ) as RunningStackFile;
        resolve({ child, output: () => output, running });
      }
    };
    child.stdout?.on('data', check);
    child.once('exit', (code) => {
      clearTimeout(guard);
      reject(new Error(`the stack exited with ${code} before it was ready:\n${output}`));
    });
  });
}

function stopStack(stack: RunningStack, signal: NodeJS.Signals = 'SIGINT'): Promise<number | null> {
  return new Promise((resolve) => {
    if (stack.child.exitCode !== null || stack.child.signalCode !== null)
      return resolve(stack.child.exitCode);
    stack.child.once('exit', (code) => resolve(code));
    stack.child.kill(signal);
  });
}

describe('dev stack', () => {
  const started: RunningStack[] = [];
  after(async () => {
    for (const stack of started) await stopStack(stack);
    rmSync(stackDir, { recursive: true, force: true });
  });

  it('serves the Web UI, answers doctor, stops on Ctrl-C and keeps its data for the next run', async () => {
    const env = stackEnv({ temporal: await freePort(), ui: await freePort() });
    const first = await startStack(env);
    started.push(first);
    assert.ok(first.running.uiUrl !== undefined);

    const ui = await fetch(first.running.uiUrl);
    assert.equal(ui.status, 200);
    assert.match(await ui.text(), /<html/i);

    const doctor = await runCli(['doctor'], env);
    assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
    assert.match(doctor.stdout, /note: using the dev stack running from this checkout/);
    assert.match(doctor.stdout, /✓ old database .*PostgreSQL 15\./);
    assert.match(doctor.stdout, /✓ new database .*PostgreSQL 17\./);

    const oldDb = new pg.Client({ connectionString: first.running.env.OLD_DATABASE_URL });
    await oldDb.connect();
    await oldDb.query(
      'CREATE TABLE kept_between_runs (id int PRIMARY KEY); INSERT INTO kept_between_runs VALUES (42)',
    );
    await oldDb.end();

    assert.equal(await stopStack(first), 0);
    assert.match(first.output(), /dev stack stopped/);
    const oldPort = Number(new URL(first.running.env.OLD_DATABASE_URL ?? '').port);
    assert.equal(await isPortFree(oldPort), true, 'old PostgreSQL stopped');
    assert.equal(await isPortFree(Number(env.TEMPORAL_PORT)), true, 'Temporal stopped');
    assert.throws(() => process.kill(first.running.pid, 0), 'stack process gone');

    const second = await startStack(env);
    started.push(second);
    const again = new pg.Client({ connectionString: second.running.env.OLD_DATABASE_URL });
    await again.connect();
    const { rows } = await again.query<{ id: number }>('SELECT id FROM kept_between_runs');
    await again.end();
    assert.deepEqual(rows, [{ id: 42 }]);
    assert.equal(await stopStack(second, 'SIGTERM'), 0);
  });

  it('a killed worker is restarted and the servers stay; Ctrl-C stops the worker before the servers', async () => {
    const env = stackEnv({ temporal: await freePort(), ui: await freePort() });
    const stack = await startStack(env, true);
    started.push(stack);
    const runningFile = () =>
      JSON.parse(readFileSync(path.join(stackDir, 'running.json'), 'utf8')) as RunningStackFile;
    const firstWorker = stack.running.workerPid;
    assert.ok(firstWorker !== undefined, 'the stack publishes its worker');
    await waitUntil('the worker to run', () =>
      /Worker state changed.*RUNNING|"state":"RUNNING"/.test(stack.output()),
    );

    process.kill(firstWorker, 'SIGKILL');
    const restarted = await waitFor(
      'a new worker',
      () => Promise.resolve(runningFile().workerPid),
      (pid) => pid !== undefined && pid !== firstWorker,
    );
    assert.match(
      stack.output(),
      /the worker \(pid \d+\) exited \(SIGKILL\); Temporal and both databases keep running/,
    );
    assert.equal(stack.child.exitCode, null, 'the stack runs on');
    const doctor = await runCli(['doctor'], env);
    assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
    await waitUntil(
      'the new worker to run',
      () =>
        stack
          .output()
          .split('\n')
          .filter((line) => /"state":"RUNNING"/.test(line)).length >= 2,
    );

    // Ctrl-C in a terminal: SIGINT to every process of the foreground group at once.
    const oldDb = new pg.Client({ connectionString: stack.running.env.OLD_DATABASE_URL });
    let oldLostAt: number | undefined;
    oldDb.on('error', () => (oldLostAt ??= Date.now()));
    oldDb.on('end', () => (oldLostAt ??= Date.now()));
    await oldDb.connect();
    const exited = new Promise<number | null>((resolve) => stack.child.once('exit', (code) => resolve(code)));
    process.kill(-stack.child.pid!, 'SIGINT');
    assert.equal(await exited, 0);
    await waitUntil('the old connection to end', () => oldLostAt !== undefined);
    const lines = stack
      .output()
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as { time: number; msg: string; pid: number });
    const at = (text: RegExp, pid?: number) =>
      lines.find((line) => text.test(line.msg) && (pid === undefined || line.pid === pid))?.time;
    const workerStopped = at(/^worker stopped$/, restarted);
    const serversStopping = at(/^(old|new|temporal): stopped$/);
    assert.ok(workerStopped !== undefined, `the worker drained and stopped: ${stack.output().slice(-2000)}`);
    assert.ok(
      serversStopping !== undefined && serversStopping >= workerStopped,
      'servers stop after the worker',
    );
    assert.ok(oldLostAt! >= workerStopped, 'old served until the worker had stopped');
    assert.equal(await isPortFree(Number(env.TEMPORAL_PORT)), true, 'Temporal stopped');
    assert.throws(() => process.kill(restarted!, 0), 'worker gone');
  });
});
