// `migrate routers <migration>`: the stage and every registered router with the version it has
// seen; exit 1 when one is behind or gone (a killed router shows as gone once its session on old has
// ended, not only after its heartbeats fall silent), one line and exit 2 when old is not configured.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ensureHelperSchema, HELPER_SCHEMA } from '../../db/helper-schema';
import { setStage, StageWatcher } from '../../db/stage-store';
import { runCli } from '../harness/cli';
import { freePort } from '../../provision/ports';
import { databasePools, servers } from '../harness/servers';
import { startStageWatcherProcess } from '../harness/stage-watchers';
import { waitFor } from '../harness/wait';

describe('migrate routers', () => {
  const pools = databasePools();
  const migration = `routers-${randomUUID().slice(0, 8)}`;
  let watcher: StageWatcher;

  before(async () => {
    await ensureHelperSchema(pools.old);
    await setStage(pools.old, migration, { stage: 'live', readPercent: 5 });
    watcher = new StageWatcher(pools.old, migration, { routerId: `${migration}-app-1`, listen: false });
    await watcher.start();
  });

  after(async () => {
    await watcher.stop();
    await pools.end();
  });

  it('shows the stage and each router with the version it has seen', async () => {
    const { code, stdout, stderr } = await runCli(['routers', migration], process.env);
    assert.equal(code, 0, stderr);
    assert.match(
      stdout,
      new RegExp(`migration ${migration}: stage live \\(5% of reads on new\\), version 1`),
    );
    assert.match(
      stdout,
      new RegExp(`ok +${migration}-app-1 .* sees live version 1, last heartbeat [\\d.]+ s ago`),
    );
    assert.match(stdout, /all 1 routers follow version 1/);

    const json = await runCli(['routers', migration, '--json'], process.env);
    const report = JSON.parse(json.stdout) as {
      stage: { version: number };
      routers: Array<{ routerId: string }>;
    };
    assert.equal(report.stage.version, 1);
    assert.deepEqual(
      report.routers.map((router) => router.routerId),
      [`${migration}-app-1`],
    );
  });

  it('exits 1 and says so when a router is behind', async () => {
    // A router that stopped following (its heartbeat still says version 1) while the stage moved on.
    await pools.old.query(
      `INSERT INTO ${HELPER_SCHEMA}.routers (router_id, migration, stage, version) VALUES ($1, $2, 'live', 1)`,
      [`${migration}-stuck`, migration],
    );
    await pools.old.query(
      `UPDATE ${HELPER_SCHEMA}.stages SET version = version + 1, read_percent = 25 WHERE migration = $1`,
      [migration],
    );
    const { code, stdout } = await runCli(['routers', migration], process.env);
    assert.equal(code, 1, stdout);
    assert.match(stdout, new RegExp(`BEHIND ${migration}-stuck .* sees live version 1`));
    assert.match(stdout, /of 2 routers are behind, silent or gone/);
  });

  it('shows a killed router as gone once its session on old has ended, before its heartbeats fall silent', async () => {
    const routerId = `${migration}-killed`;
    const router = startStageWatcherProcess(migration, routerId, 'listen');
    try {
      await waitFor('the router to start', () => Promise.resolve(router.seen.some((s) => s.ready)));
      const line = (stdout: string) => stdout.split('\n').find((l) => l.includes(routerId)) ?? '';
      const before = await runCli(['routers', migration], process.env);
      assert.match(line(before.stdout), /^ok /);
      await router.stop('SIGKILL');
      const report = await waitFor(
        'the killed router shown as gone',
        async () => {
          const json = await runCli(['routers', migration, '--json'], process.env);
          return JSON.parse(json.stdout) as {
            routers: Array<{ routerId: string; sessionGone: boolean; silentSeconds: number }>;
          };
        },
        (r) => r.routers.some((entry) => entry.routerId === routerId && entry.sessionGone),
        300,
      );
      // Gone while its last heartbeat is recent: heartbeats alone would still say ok.
      const killed = report.routers.find((entry) => entry.routerId === routerId)!;
      const after = await runCli(['routers', migration], process.env);
      assert.equal(after.code, 1, after.stdout);
      assert.match(line(after.stdout), /^GONE .* its session on old has ended \(has its process died\?\)/);
      console.log(
        `  killed router shown as gone with its last heartbeat ${killed.silentSeconds.toFixed(1)} s old`,
      );
    } finally {
      await router.stop('SIGKILL');
      await pools.old.query(`DELETE FROM ${HELPER_SCHEMA}.routers WHERE router_id = $1`, [routerId]);
    }
  });

  it('refuses a migration old knows nothing of (no stage, no router) with one line and exit code 2', async () => {
    const { code, stdout, stderr } = await runCli(['routers', 'never-started'], process.env);
    assert.equal(code, 2, stdout);
    assert.equal(stdout, '');
    assert.match(
      stderr,
      /^error: old knows no migration named never-started: it has set no stage and no router has registered for it/,
    );
  });

  it('says in one line which variable to set when old is not configured', async () => {
    const { code, stderr } = await runCli(['routers', migration], { ...process.env, OLD_DATABASE_URL: '' });
    assert.equal(code, 2);
    assert.match(stderr, /the old database is not configured: set OLD_DATABASE_URL/);
    assert.doesNotMatch(stderr, /\n\s+at /);
  });

  it('says in one line that old refuses connections, without the password', async () => {
    const url = new URL(servers.oldUrl);
    url.port = String(await freePort());
    const { code, stderr } = await runCli(['routers', migration], {
      ...process.env,
      OLD_DATABASE_URL: url.toString(),
    });
    assert.equal(code, 2);
    assert.match(stderr, /old database at 127\.0\.0\.1:\d+ refuses connections/);
    assert.doesNotMatch(stderr, new RegExp(url.password));
  });
});
