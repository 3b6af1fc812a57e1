// The worker process obeys SIGTERM at any moment (issue 13, item 2): while it starts (here: stuck
// connecting to a "Temporal" that accepts the connection and never answers) it stops at once; when it
// cannot start it says why in one line and exits 1; once it runs, SIGTERM drains and exits 0.
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, describe, it } from 'node:test';
import { freePort } from '../../provision/ports';
import { waitUntil } from '../harness/wait';
import { startWorkerProcess, type WorkerProcess } from '../harness/worker-process';

describe('worker process lifecycle', () => {
  const workers: WorkerProcess[] = [];
  const sockets: Socket[] = [];
  let silent: Server | undefined;
  after(async () => {
    await Promise.all(workers.map((worker) => worker.kill('SIGKILL')));
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => (silent === undefined ? resolve() : silent.close(() => resolve())));
  });

  const exitOf = async (worker: WorkerProcess) => {
    // Bounded, so that a worker that ignores the signal fails the test instead of hanging it.
    await waitUntil(
      'the worker to exit',
      () => worker.child.exitCode !== null || worker.child.signalCode !== null,
    );
    await worker.exited;
    return worker.child.exitCode;
  };

  it('SIGTERM while it is still connecting to Temporal: it stops at once', async () => {
    let connected = 0;
    silent = createServer((socket) => {
      connected += 1;
      sockets.push(socket);
    });
    await new Promise<void>((resolve) => silent!.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };
    const worker = startWorkerProcess(`lifecycle-${port}`, { TEMPORAL_ADDRESS: `127.0.0.1:${port}` });
    workers.push(worker);
    await waitUntil('the worker to connect to the silent server', () => connected > 0);
    assert.equal(worker.child.exitCode, null, 'still starting');
    worker.child.kill('SIGTERM');
    assert.equal(await exitOf(worker), 128 + 15);
    assert.ok(
      worker.lines.some((line) => /stopped by SIGTERM before it started/.test(String(line.msg))),
      JSON.stringify(worker.lines),
    );
  });

  it('a Temporal that refuses: one line naming it, exit code 1', async () => {
    const port = await freePort();
    const worker = startWorkerProcess(`lifecycle-refused-${port}`, { TEMPORAL_ADDRESS: `127.0.0.1:${port}` });
    workers.push(worker);
    assert.equal(await exitOf(worker), 1);
    const errors = worker.lines.filter((line) => Number(line.level) >= 50);
    assert.equal(errors.length, 1, JSON.stringify(worker.lines));
    assert.match(String(errors[0]?.msg), new RegExp(`^worker cannot start: Temporal at 127.0.0.1:${port}`));
    assert.doesNotMatch(String(errors[0]?.msg), /\n/);
  });

  it('SIGTERM while it runs: it drains and exits 0', async () => {
    const worker = startWorkerProcess(`lifecycle-running-${Date.now()}`);
    workers.push(worker);
    await waitUntil('the worker to run', () => worker.lines.some((line) => line.state === 'RUNNING'));
    worker.child.kill('SIGTERM');
    assert.equal(await exitOf(worker), 0);
    assert.ok(worker.lines.some((line) => line.msg === 'worker stopped'));
  });
});
