// A process of this project never dies from an idle connection's error: when the server ends an
// idle session (a restart, an administrator's pg_terminate_backend, the servers stopping at the end
// of a benchmark), pg emits an `error` event on the pool, which kills a process that does not
// listen for it. The pools the scripts and the worker open (db/pools.ts, toleratingPool) listen;
// a plain pg.Pool in the same spot dies, which shows the test can fail.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { databasePools, servers } from '../harness/servers';

const POOLS_MODULE = require.resolve('../../db/pools');

/**
 * A child process that opens a pool of one session named `application`, runs a query, says READY,
 * and on its next input line queries again and exits; `plain` uses pg.Pool without a listener.
 */
function poolProcess(url: string, application: string, plain: boolean) {
  const script = `
    const pg = require('pg');
    const { toleratingPool } = require(${JSON.stringify(POOLS_MODULE)});
    const config = { connectionString: process.env.POOL_URL, max: 1, application_name: process.env.POOL_APP };
    const pool = ${plain ? 'new pg.Pool(config)' : 'toleratingPool(config)'};
    (async () => {
      await pool.query('SELECT 1');
      console.log('READY');
      process.stdin.once('data', async () => {
        // The pool drops the lost client once the server's notice arrives; a query that raced it
        // would fail in its caller, which is not what this is about.
        while (pool.totalCount > 0) await new Promise((resolve) => setTimeout(resolve, 10));
        const { rows } = await pool.query('SELECT 2 AS two');
        console.log('AGAIN ' + rows[0].two);
        await pool.end();
        process.exit(0);
      });
    })();
  `;
  const child = spawn(process.execPath, ['-e', script], {
    env: { ...process.env, POOL_URL: url, POOL_APP: application },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin.on('error', () => undefined); // a process that died cannot read what is written to it
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', () => {
      if (output.includes('READY')) resolve();
    });
    void exited.then(() => reject(new Error(`the pool process ended before it was ready: ${output}`)));
  });
  return { child, ready, exited, output: () => output };
}

describe('an idle connection the server ends', () => {
  let admin: ReturnType<typeof databasePools>;
  before(() => {
    admin = databasePools();
  });
  after(async () => {
    await admin.end();
  });

  /** Ends every session of `application` on old, as an administrator (or a restart) would. */
  async function terminate(application: string): Promise<number> {
    // Wait for the process's session to be idle in the pool first, then end it.
    for (;;) {
      const { rows } = await admin.old.query<{ ended: boolean }>(
        `SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle'`,
        [application],
      );
      if (rows.length > 0) return rows.length;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  it('does not kill a process whose pool is a toleratingPool; once the loss is seen, the next query reconnects', async () => {
    const application = `idle-loss-${randomUUID().slice(0, 8)}`;
    const proc = poolProcess(servers.oldUrl, application, false);
    await proc.ready;
    assert.equal(await terminate(application), 1);
    proc.child.stdin.write('again\n');
    assert.equal(await proc.exited, 0, proc.output());
    assert.match(proc.output(), /AGAIN 2/);
  });

  it('kills a process whose plain pg.Pool has no listener (what the benchmark died of)', async () => {
    const application = `idle-loss-plain-${randomUUID().slice(0, 8)}`;
    const proc = poolProcess(servers.oldUrl, application, true);
    await proc.ready;
    assert.equal(await terminate(application), 1);
    proc.child.stdin.write('again\n'); // a process that survived would query again and exit 0
    const code = await proc.exited;
    assert.notEqual(code, 0);
    assert.match(proc.output(), /terminating connection due to administrator command/);
  });
});
