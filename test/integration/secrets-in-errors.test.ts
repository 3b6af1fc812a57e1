// No secret in any error (issue 13, item 5): every error path that takes a connection URL is given
// one with a canary password, malformed or well formed, wrong or refused, in the userinfo or in the
// query string, and everything it raises or prints is searched for the canary: the router's errors
// with every field and cause (Node's `Invalid URL` keeps the whole URL in `input`), the config check,
// the CLI's output and the worker's log. A password in the query string is refused like one in the
// userinfo.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { after, describe, it } from 'node:test';
import { parseMigrationConfig, parseSiteConfig } from '../../config/load';
import { resolveConnection } from '../../config/connections';
import { describeDatabaseError } from '../../db/database-errors';
import { createLogger } from '../../db/logger';
import { redactError, redactSecrets } from '../../model/redact';
import { freePort } from '../../provision/ports';
import { createRouter, RouterError } from '../../router';
import { runCli } from '../harness/cli';
import { servers } from '../harness/servers';
import { waitUntil } from '../harness/wait';
import { startWorkerProcess, type WorkerProcess } from '../harness/worker-process';

const CANARY = 'CanaryPw7734';

/** Every string reachable from `value`: own fields (enumerable or not), causes, nested objects. */
function strings(value: unknown, seen = new Set<unknown>(), depth = 0): string[] {
  if (typeof value === 'string') return [value];
  if (value === null || typeof value !== 'object' || seen.has(value) || depth > 8) return [];
  seen.add(value);
  const found: string[] = [];
  for (const key of Object.getOwnPropertyNames(value)) {
    found.push(key, ...strings((value as Record<string, unknown>)[key], seen, depth + 1));
  }
  return found;
}

/** Fails when `err` (or what printing it shows) carries the canary anywhere. */
function assertNoCanary(what: string, err: unknown): void {
  const shown = [...strings(err), inspect(err, { depth: 8, showHidden: true }), String(err)];
  const leaks = shown.filter((text) => text.includes(CANARY));
  assert.deepEqual(leaks, [], `${what} carries the password: ${leaks.join(' | ')}`);
}

/** Runs `work`, which must throw; returns what it threw. */
async function thrown(work: () => unknown): Promise<unknown> {
  try {
    await work();
  } catch (err) {
    return err;
  }
  assert.fail('it did not throw');
}

/** The test run's old server, as its user with the canary as a (wrong) password. */
function withWrongPassword(url: string, form: 'userinfo' | 'query'): string {
  const parsed = new URL(url);
  parsed.password = '';
  if (form === 'userinfo') parsed.password = CANARY;
  else parsed.searchParams.set('password', CANARY);
  return parsed.toString();
}

const MALFORMED = [
  `postgres://app:${CANARY}@db.example:99999/shop`, // port out of range
  `postgres://app:${CANARY}@[db/shop`, // broken host
  `postgres://app:${CANARY}@db:54x2/shop`, // a port that is no number
];

describe('no password in any error', () => {
  const workers: WorkerProcess[] = [];
  after(async () => {
    await Promise.all(workers.map((worker) => worker.kill('SIGKILL')));
  });

  it('text scrubbing: URLs with an unencoded @, PGPASSWORD=, ?password=, JSON', () => {
    for (const text of [
      ...MALFORMED,
      `postgres://app:p@ss${CANARY}@db:5432/shop`, // an unencoded @ in the password
      `postgres://app@db/shop?sslmode=require&password=${CANARY}`,
      `PGPASSWORD=${CANARY} psql`,
      `{"user":"app","password":"${CANARY}"}`,
      `host=db password='${CANARY} x' user=app`,
    ]) {
      assert.doesNotMatch(redactSecrets(text), new RegExp(CANARY), text);
    }
    let invalid: unknown;
    try {
      new URL(MALFORMED[0]!);
    } catch (err) {
      invalid = err;
    }
    assert.match(String((invalid as { input?: string }).input), new RegExp(CANARY), "Node's error keeps it");
    const safe = redactError(new Error('connecting failed', { cause: invalid }));
    assertNoCanary('redactError of an Invalid URL cause', safe);
    assert.equal((safe.cause as Error).name, 'TypeError');
  });

  it('createRouter: malformed, refused, wrong password in the userinfo or the query', async () => {
    const logger = createLogger({ name: 'router', level: 'silent', pretty: false });
    const other = { connectionString: servers.newUrl };
    for (const url of MALFORMED) {
      const err = await thrown(() =>
        createRouter({ migration: 'm', old: { connectionString: url }, new: other, logger }),
      );
      assert.ok(err instanceof RouterError, `a RouterError, not ${String(err)}`);
      assert.equal(err.code, 'BAD_OPTIONS');
      assert.match(err.message, /`old.connectionString` is not a URL/);
      assertNoCanary(`createRouter with ${url.replace(CANARY, '<canary>')}`, err);
    }
    const refused = `postgres://app:${CANARY}@127.0.0.1:${await freePort()}/shop`;
    const wrong = [
      refused,
      withWrongPassword(servers.oldUrl, 'userinfo'),
      withWrongPassword(servers.oldUrl, 'query'),
    ];
    for (const url of wrong) {
      const err = await thrown(() =>
        createRouter({ migration: 'm', old: { connectionString: url }, new: other, logger }),
      );
      assert.ok(err instanceof RouterError, `a RouterError, not ${String(err)}`);
      assert.equal(err.code, 'OLD_UNREADABLE');
      assertNoCanary(`createRouter with ${url.replace(CANARY, '<canary>')}`, err);
    }
  });

  it('config: a password in the query string is refused like one in the userinfo, and never echoed', () => {
    for (const url of [
      `postgres://app@db:5432/shop?password=${CANARY}`,
      `postgres://app@db:5432/shop?sslmode=require&PASSWORD=${CANARY}`,
      `postgres://app:${CANARY}@db:5432/shop`,
    ]) {
      const err = (() => {
        try {
          parseSiteConfig({ old: { url } });
        } catch (caught) {
          return caught;
        }
        return assert.fail(`${url} was accepted`);
      })();
      assert.match((err as Error).message, /old\.url: contains a password/);
      assertNoCanary('the config check', err);
    }
    for (const url of MALFORMED) {
      const err = (() => {
        try {
          parseMigrationConfig({ name: 'm', tables: ['orders'], old: { url } });
        } catch (caught) {
          return caught;
        }
        return assert.fail(`${url} was accepted`);
      })();
      assertNoCanary('the config check', err);
      const fromEnv = (() => {
        try {
          resolveConnection('old', { urlEnv: 'OLD_DATABASE_URL' }, { OLD_DATABASE_URL: url });
        } catch (caught) {
          return caught;
        }
        return assert.fail(`${url} was accepted`);
      })();
      assert.match((fromEnv as Error).message, /^OLD_DATABASE_URL is not a URL/);
      assertNoCanary('resolving a connection', fromEnv);
    }
    const pgError = Object.assign(new Error(`could not connect to postgres://app:${CANARY}@db/shop`), {
      code: 'XX000',
    });
    assertNoCanary(
      'describeDatabaseError',
      describeDatabaseError('old', 'db:5432', 'OLD_DATABASE_URL', 'app', 'shop', pgError),
    );
  });

  it('the CLI: doctor, routers, start and status print no password, whatever the URL', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'canary-'));
    const config = path.join(dir, 'migration.yaml');
    writeFileSync(
      config,
      `name: canary\ntables: [orders]\nold: { url: "postgres://app@db:5432/shop?password=${CANARY}" }\n`,
    );
    const base = { ...process.env, MIGRATE_IGNORE_DEV_STACK: '1' };
    const runs = [];
    for (const [oldUrl, newUrl] of [
      [MALFORMED[0]!, MALFORMED[2]!],
      [withWrongPassword(servers.oldUrl, 'userinfo'), withWrongPassword(servers.newUrl, 'query')],
      [MALFORMED[1]!, `postgres://app:${CANARY}@127.0.0.1:${await freePort()}/shop`],
    ]) {
      const env = { ...base, OLD_DATABASE_URL: oldUrl, NEW_DATABASE_URL: newUrl };
      runs.push({ what: 'doctor', ...(await runCli(['doctor'], env)) });
      runs.push({ what: 'routers', ...(await runCli(['routers', 'canary'], env)) });
      runs.push({ what: 'status', ...(await runCli(['status', 'canary'], env)) });
    }
    const start = await runCli(['start', '--config', config], base);
    runs.push({ what: 'start', ...start });
    assert.equal(start.code, 2);
    assert.match(start.stderr, /old\.url: contains a password/);
    for (const run of runs) {
      assert.notEqual(run.code, 0, `${run.what} failed`);
      assert.doesNotMatch(run.stdout + run.stderr, new RegExp(CANARY), run.what);
      assert.doesNotMatch(run.stderr, /^\s+at /m, `${run.what}: no stack trace`);
    }
  });

  it('the worker: a malformed URL is one line without the password, and exit code 1', async () => {
    for (const url of MALFORMED) {
      const worker = startWorkerProcess(`canary-${Date.now()}`, { OLD_DATABASE_URL: url });
      workers.push(worker);
      // Before issue 13 it logged its line and then hung, ignoring SIGTERM.
      await waitUntil('the worker to exit', () => worker.child.exitCode !== null);
      await worker.exited;
      assert.equal(worker.child.exitCode, 1);
      const errors = worker.lines.filter((line) => Number(line.level) >= 50);
      assert.equal(errors.length, 1, JSON.stringify(worker.lines));
      assert.match(String(errors[0]?.msg), /^OLD_DATABASE_URL is not a URL/);
      assert.doesNotMatch(JSON.stringify(worker.lines), new RegExp(CANARY));
    }
  });
});
