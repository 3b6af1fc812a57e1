// How a taken port is recognised: the CLI's bind failures (its own check, the frontend's and the Web
// UI's bind, as temporal CLI 1.9.1 prints them), the banner that names the ports it serves, the
// refusal's wording, and (on Linux) which process group holds a listening socket.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { describe, it } from 'node:test';
import {
  ephemeralPortsFrom,
  freePort,
  groupListensOn,
  portInUseIn,
  PortTakenError,
} from '../../provision/ports';
import { bannerShows } from '../../provision/temporal-server';

describe('freePort', () => {
  it('picks a free port below the range the system gives outgoing connections', async () => {
    const low = ephemeralPortsFrom();
    const ports = await Promise.all(Array.from({ length: 20 }, () => freePort()));
    for (const port of ports) {
      assert.ok(port >= 10_000 && port < low, `${port} is below the ephemeral range from ${low}`);
    }
    assert.equal(new Set(ports).size, ports.length, 'never the same port twice');
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(ports[0], '127.0.0.1', resolve));
    await new Promise((resolve) => server.close(resolve));
  });
});

describe('portInUseIn', () => {
  it('finds the port in each way the dev server reports a bind failure', () => {
    const cases: Array<[string, number]> = [
      [
        "Error: can't set frontend port 17233: listen tcp 127.0.0.1:17233: bind: address already in use",
        17233,
      ],
      ["Error: can't set UI port 18233: listen tcp 127.0.0.1:18233: bind: address already in use", 18233],
      [
        '{"level":"ERROR","msg":"Failed to start gRPC listener","error":"listen tcp 127.0.0.1:17250: bind: address already in use","service":"frontend","address":"127.0.0.1:17250"}',
        17250,
      ],
      [
        '{"level":"FATAL","prefix":"echo","file":"server.go","line":"155","message":"listen tcp 127.0.0.1:18250: bind: address already in use"}',
        18250,
      ],
      [
        'panic: failed listening for HTTP API on [::1]:41287: listen tcp [::1]:41287: bind: address already in use',
        41287,
      ],
    ];
    for (const [output, port] of cases) assert.equal(portInUseIn(`some line\n${output}\nmore`), port, output);
  });

  it('finds nothing in other failures', () => {
    assert.equal(portInUseIn('Error: failed starting server: unable to open database file'), undefined);
    assert.equal(portInUseIn('dial tcp 127.0.0.1:7233: connect: connection refused'), undefined);
  });
});

describe('bannerShows', () => {
  const banner = [
    'Temporal CLI 1.9.1 (Server 1.32.0, UI 2.54.1)',
    '',
    'Temporal Server:      localhost:17233',
    'Temporal Persistence: in-memory',
    'Temporal UI:          http://localhost:18233',
    'Temporal Metrics:     http://localhost:34575/metrics',
  ].join('\n');

  it('reads the ports of the server and the Web UI', () => {
    assert.equal(bannerShows(banner, 'Server', 17233), true);
    assert.equal(bannerShows(banner, 'UI', 18233), true);
    assert.equal(bannerShows('Server:  localhost:7233\nUI:      http://localhost:8233\n', 'UI', 8233), true);
  });

  it('does not take another port, a prefix of it, or the metrics line for it', () => {
    assert.equal(bannerShows(banner, 'Server', 1723), false);
    assert.equal(bannerShows(banner, 'Server', 18233), false);
    assert.equal(bannerShows(banner, 'UI', 34575), false);
    assert.equal(bannerShows('', 'Server', 17233), false);
  });
});

describe('PortTakenError', () => {
  it('names the port, the other process and what to do, in one line', () => {
    const err = new PortTakenError(7233, 'Temporal', 'TEMPORAL_PORT');
    assert.equal(
      err.message,
      'the Temporal port 7233 is taken by another process (maybe another dev stack or Temporal server): stop that process, or set TEMPORAL_PORT to a free port',
    );
    assert.match(new PortTakenError(8233, 'Temporal Web UI').message, /or choose another port$/);
  });
});

describe('groupListensOn', { skip: process.platform !== 'linux' && '/proc is Linux only' }, () => {
  it("tells a port a child's process group listens on from one held by another process", async () => {
    const port = await freePort();
    const child = spawn(
      process.execPath,
      ['-e', `require('net').createServer().listen(${port}, '127.0.0.1', () => console.log('up'))`],
      { detached: true, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const other = net.createServer();
    try {
      await new Promise((resolve) => child.stdout.once('data', resolve));
      assert.equal(groupListensOn(child.pid!, port), true);
      const otherPort = await freePort();
      await new Promise<void>((resolve) => other.listen(otherPort, '127.0.0.1', () => resolve()));
      assert.equal(groupListensOn(child.pid!, otherPort), false, 'held by this process, not the child');
      assert.equal(groupListensOn(child.pid!, await freePort()), false, 'held by no one');
    } finally {
      other.close();
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
  });
});
