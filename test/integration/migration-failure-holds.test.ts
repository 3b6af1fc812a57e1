// A failure retrying cannot heal holds the whole migration with its cause, seen through the `migrate`
// CLI as an operator sees it (issue 13, item 1): a foreign key on new whose parent is not migrated,
// and a worker whose password new rejects, each hold the migration within a minute with the cause,
// the table (and for a chunk its key range) in `migrate status` and `migrate status --json`. An
// invalid hotRowsWhere is refused by `start` before change capture is installed. A failure that can
// heal (new unreachable) keeps retrying, and status shows it retrying, since when, its attempts and
// the last error.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { MigrationStatus } from '../../model/messages';
import { startRunningWorker } from '../harness/backfill';
import { runCli } from '../harness/cli';
import { freshDatabases } from '../harness/router';
import { installQuietRuntime, servers } from '../harness/servers';
import { waitFor } from '../harness/wait';
import { freePort } from '../../provision/ports';
import type { RetryingActivity } from '../../client/retrying';
import { startWorkerProcess } from '../harness/worker-process';

installQuietRuntime();

/** The bound: the migration holds with the cause within a minute of meeting it. */
const MINUTE_MS = 60_000;

/** Waits for the migration to hold, reading `migrate status --json`; fails after a minute. */
async function heldWithinAMinute(
  read: () => Promise<MigrationStatus>,
  what: string,
): Promise<MigrationStatus> {
  const since = Date.now();
  const held = await waitFor(what, read, (status) => status.held !== null || Date.now() - since > MINUTE_MS);
  assert.ok(held.held !== null, `${what}: not held after a minute: ${JSON.stringify(held.events.slice(-3))}`);
  return held;
}

describe('failures that cannot heal hold the migration', () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  const stops: Array<() => Promise<void>> = [];
  const dir = mkdtempSync(path.join(tmpdir(), 'failure-holds-'));

  before(async () => {
    db = await freshDatabases('failure_holds');
  });

  after(async () => {
    for (const stop of stops.reverse()) await stop();
    await db.end();
    rmSync(dir, { recursive: true, force: true });
  });

  const cliEnv = (extra: NodeJS.ProcessEnv = {}) => ({
    ...db.env,
    TEMPORAL_ADDRESS: servers.temporalAddress,
    MIGRATE_IGNORE_DEV_STACK: '1',
    ...extra,
  });

  function writeConfig(name: string, document: Record<string, unknown>): string {
    const file = path.join(dir, `${name}.json`);
    writeFileSync(file, JSON.stringify({ name, ...document }));
    return file;
  }

  async function statusJson(migration: string): Promise<MigrationStatus> {
    const shown = await runCli(['status', migration, '--json'], cliEnv());
    assert.equal(shown.code, 0, shown.stderr);
    return JSON.parse(shown.stdout) as MigrationStatus;
  }

  it('start refuses an invalid hotRowsWhere before change capture is installed', async () => {
    const worker = await startRunningWorker('failure-holds-hot', undefined, db.env);
    stops.push(worker.stop);
    await db.pools.old.query(`CREATE TABLE hot_t (id int PRIMARY KEY, status text)`);
    await db.pools.new.query(`CREATE TABLE hot_t (id int PRIMARY KEY, status text)`);
    const migration = 'hot-refused';
    const file = writeConfig(migration, {
      tables: [{ name: 'public.hot_t', hotRowsWhere: 'no_such_column > 1' }],
      temporal: { taskQueue: worker.taskQueue },
    });
    const refused = await runCli(['start', '--config', file], cliEnv());
    assert.equal(refused.code, 2, refused.stdout);
    assert.match(refused.stderr, /hotRowsWhere for "public"\."hot_t" is not a valid condition/);
    const triggers = await db.pools.old.query(
      `SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.hot_t'::regclass AND NOT tgisinternal`,
    );
    assert.deepEqual(triggers.rows, [], 'no capture trigger on old');
  });

  it('a foreign key on new whose parent is not migrated holds the migration with the table, the key range and the fix', async () => {
    const worker = await startRunningWorker('failure-holds-fk', undefined, db.env);
    stops.push(worker.stop);
    for (const pool of [db.pools.old, db.pools.new]) {
      await pool.query(`CREATE TABLE fk_parent (id int PRIMARY KEY)`);
      await pool.query(
        `CREATE TABLE fk_child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES fk_parent)`,
      );
    }
    await db.pools.old.query(`INSERT INTO fk_parent SELECT g FROM generate_series(1, 10) g`);
    await db.pools.old.query(`INSERT INTO fk_child SELECT g, 1 + g % 10 FROM generate_series(1, 500) g`);
    const migration = 'fk-held';
    const file = writeConfig(migration, {
      tables: ['public.fk_child'],
      chunkSize: 100,
      partitions: 2,
      temporal: { taskQueue: worker.taskQueue },
    });
    const started = await runCli(['start', '--config', file], cliEnv());
    assert.equal(started.code, 0, started.stderr);

    const held = await heldWithinAMinute(() => statusJson(migration), 'the hold for the foreign key');
    assert.equal(held.held?.kind, 'failure', JSON.stringify(held.held));
    assert.equal(held.held?.cause?.code, 'SyncFailed');
    assert.equal(held.held?.cause?.table, 'public.fk_child');
    assert.match(held.held.reason, /fk_child/);
    assert.match(held.held.reason, /in keys \(/);
    assert.match(held.held.reason, /SQLSTATE 23503/);
    assert.match(held.held.reason, /migrate that table too/);

    const text = await runCli(['status', migration], cliEnv());
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /held: the backfill of public\.fk_child cannot go on: .*SQLSTATE 23503/);
    assert.match(text.stdout, /mend the cause, then migrate resume/);
  });

  /**
   * A migration whose backfill copies slowly under a row limit, started by a worker with the right
   * settings, which then stops: `next` takes over on the same task queue with other settings.
   */
  async function handOver(migration: string, table: string, next: NodeJS.ProcessEnv) {
    const right = await startRunningWorker(`failure-holds-${table}`, undefined, db.env);
    let rightStopped = false;
    stops.push(async () => {
      if (!rightStopped) await right.stop();
    });
    await db.pools.old.query(`CREATE TABLE ${table} (id int PRIMARY KEY, note text)`);
    await db.pools.new.query(`CREATE TABLE ${table} (id int PRIMARY KEY, note text)`);
    await db.pools.old.query(`INSERT INTO ${table} SELECT g, 'row ' || g FROM generate_series(1, 20000) g`);
    const file = writeConfig(migration, {
      tables: [`public.${table}`],
      chunkSize: 100,
      partitions: 1,
      chunksInFlight: 1,
      chunksPerActivity: 1,
      throttle: { maxRowsPerSecond: 500 },
      temporal: { taskQueue: right.taskQueue },
    });
    const started = await runCli(['start', '--config', file], cliEnv());
    assert.equal(started.code, 0, started.stderr);
    await waitFor(
      'the backfill to copy rows',
      () => statusJson(migration),
      (status) => (status.tables[0]?.rowsCopied ?? 0) > 0,
    );
    await right.stop();
    rightStopped = true;
    const taking = startWorkerProcess(right.taskQueue, { ...db.env, ...next });
    stops.push(() => taking.kill('SIGTERM'));
    return taking;
  }

  it('a worker whose password new rejects holds the migration with the cause and no password', async () => {
    const migration = 'auth-held';
    const wrong = new URL(db.env.NEW_DATABASE_URL);
    wrong.password = 'NotThePassword815';
    const impostor = await handOver(migration, 'auth_t', { NEW_DATABASE_URL: wrong.toString() });
    const held = await heldWithinAMinute(() => statusJson(migration), 'the hold for the password');
    assert.equal(held.held?.kind, 'failure', JSON.stringify(held.held));
    // Whichever meets it first (a backfill chunk, verification, reconciliation) holds with it: a
    // password is not about one table.
    assert.match(held.held?.cause?.code ?? '', /^(AuthenticationFailed|28P01)$/, JSON.stringify(held.held));
    assert.match(held.held.reason, /SQLSTATE 28P01/);
    assert.match(held.held.reason, /fix the worker's connection settings/);
    const text = await runCli(['status', migration], cliEnv());
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /held: .*SQLSTATE 28P01.*\(mend the cause, then migrate resume\)/);
    for (const shown of [text.stdout, JSON.stringify(held), JSON.stringify(impostor.lines)]) {
      assert.doesNotMatch(shown, /NotThePassword815/);
    }
  });

  it('a failure that can heal keeps retrying, and status shows what retries, since when, the attempts and the last error', async () => {
    const migration = 'retrying';
    const nowhere = new URL(db.env.NEW_DATABASE_URL);
    nowhere.port = String(await freePort());
    await handOver(migration, 'retry_t', { NEW_DATABASE_URL: nowhere.toString() });
    const refused = (entry: RetryingActivity) => entry.attempt >= 2 && /ECONNREFUSED/.test(entry.lastError);
    const shown = await waitFor(
      'status to show an activity retrying',
      async () => {
        const json = await runCli(['status', migration, '--json'], cliEnv());
        assert.equal(json.code, 0, json.stderr);
        return JSON.parse(json.stdout) as MigrationStatus & { retrying: RetryingActivity[] };
      },
      (status) => status.retrying.some(refused),
      300,
    );
    const retrying = shown.retrying.find(refused)!;
    assert.match(retrying.workflowId, /^migration-retrying(\/|$)/);
    assert.ok(retrying.since !== null && retrying.since <= Date.now());
    assert.notEqual(shown.held?.kind, 'failure', 'a failure that can heal does not hold as one');
    const text = await runCli(['status', migration], cliEnv());
    assert.match(
      text.stdout,
      /retrying: \w+ in migration-retrying\S* since \S+, attempt \d+.*; last error: connect ECONNREFUSED/,
    );
  });

  it('with no worker polling its task queue, start and status say so and how to start one', async () => {
    const migration = 'no-worker';
    await db.pools.old.query(`CREATE TABLE lonely_t (id int PRIMARY KEY)`);
    await db.pools.new.query(`CREATE TABLE lonely_t (id int PRIMARY KEY)`);
    const taskQueue = `nobody-${Date.now()}`;
    const file = writeConfig(migration, { tables: ['public.lonely_t'], temporal: { taskQueue } });
    const started = await runCli(['start', '--config', file], cliEnv());
    assert.equal(started.code, 0, started.stderr);
    assert.match(
      started.stdout,
      new RegExp(`still preparing: no worker polls task queue ${taskQueue}; start one with`),
    );
    assert.doesNotMatch(started.stdout, /is a worker running/);
    const status = await runCli(['status', migration], cliEnv());
    assert.equal(status.code, 2, status.stdout);
    assert.match(
      status.stderr,
      new RegExp(
        `^error: cannot read migration ${migration}'s status: no worker polls task queue ${taskQueue}, .*start one with`,
      ),
    );
    assert.doesNotMatch(status.stderr, /unexpected error|Failed to query/);
  });
});
