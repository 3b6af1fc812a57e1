// `migrate doctor` against the real servers: exit 0 with versions when all answer, and one
// actionable line (never a password, never a stack trace) for each kind of failure.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { freePort } from '../../provision/ports';
import { runCli } from '../harness/cli';
import { servers } from '../harness/servers';

function withUrl(base: string, change: (url: URL) => void): string {
  const url = new URL(base);
  change(url);
  return url.toString();
}

async function doctor(overrides: NodeJS.ProcessEnv) {
  const result = await runCli(['doctor'], { ...process.env, ...overrides });
  const password = new URL(servers.oldUrl).password;
  assert.ok(
    !result.stdout.includes(password) && !result.stderr.includes(password),
    'no password in the output',
  );
  assert.doesNotMatch(result.stdout + result.stderr, /\n\s+at /, 'no stack trace');
  return result;
}

describe('migrate doctor', () => {
  it('exits 0 and prints the Temporal and both PostgreSQL versions when everything answers', async () => {
    const { code, stdout } = await doctor({});
    assert.equal(code, 0, stdout);
    assert.match(stdout, /✓ Temporal at .*: server \d+\.\d+/);
    assert.match(
      stdout,
      new RegExp(
        `✓ old database postgres://migrate@127\\.0\\.0\\.1:\\d+/app: PostgreSQL ${process.env.TEST_OLD_PG_MAJOR}\\.`,
      ),
    );
    assert.match(stdout, new RegExp(`✓ new database .*: PostgreSQL ${process.env.TEST_NEW_PG_MAJOR}\\.`));
    assert.match(stdout, /all checks passed/);
  });

  it('says Temporal is unreachable and how to start it', async () => {
    const { code, stdout } = await doctor({ TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}` });
    assert.equal(code, 1);
    assert.match(
      stdout,
      /✗ Temporal at 127\.0\.0\.1:\d+ is unreachable .*: start it .* or set TEMPORAL_ADDRESS/,
    );
    assert.match(stdout, /✓ old database/);
  });

  it('says a database refuses connections and which variable to check', async () => {
    const port = await freePort();
    const { code, stdout } = await doctor({
      OLD_DATABASE_URL: withUrl(servers.oldUrl, (u) => (u.port = String(port))),
    });
    assert.equal(code, 1);
    assert.match(
      stdout,
      new RegExp(`✗ old database at 127\\.0\\.0\\.1:${port} refuses connections: .* check OLD_DATABASE_URL`),
    );
  });

  it('says the password was rejected, without printing it', async () => {
    const { code, stdout } = await doctor({
      NEW_DATABASE_URL: withUrl(servers.newUrl, (u) => (u.password = 'wrong-password-123')),
    });
    assert.equal(code, 1);
    assert.match(
      stdout,
      /✗ new database at 127\.0\.0\.1:\d+ rejected the password for user "migrate": fix the password in NEW_DATABASE_URL/,
    );
    assert.doesNotMatch(stdout, /wrong-password-123/);
  });

  it('says the database does not exist and how to create it', async () => {
    const { code, stdout } = await doctor({
      OLD_DATABASE_URL: withUrl(servers.oldUrl, (u) => (u.pathname = '/no_such_db')),
    });
    assert.equal(code, 1);
    assert.match(
      stdout,
      /✗ old database "no_such_db" does not exist on 127\.0\.0\.1:\d+: create it \(CREATE DATABASE no_such_db\)/,
    );
  });

  it('says which variable to set when a database is not configured at all', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.NEW_DATABASE_URL;
    const { code, stdout } = await runCli(['doctor'], env);
    assert.equal(code, 1);
    assert.match(stdout, /✗ the new database is not configured: set NEW_DATABASE_URL/);
  });

  it('reports a broken config file in one line and exits 2', async () => {
    const { code, stderr } = await runCli(['doctor', '--config', '/nonexistent/migration.yaml'], process.env);
    assert.equal(code, 2);
    assert.equal(stderr, 'error: config file /nonexistent/migration.yaml does not exist\n');
  });
});
