// The read ramp's gates and the operator's commands, through the `migrate` CLI as an operator runs
// them: `migrate start --config` refuses a table it cannot migrate before anything is written, with
// the reason and no password; it starts the migration (again: nothing changes); a difference planted
// on new after verification shows in shadow reads, and the shadow gate holds the ramp with the reason;
// `approve` releases it; `pause` and `resume` stop and restart it; `abort` puts everyone back on old
// and removes capture, guards and the migration's helpers. Commands that do not apply get one clear
// line and exit code 2.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TableRef } from '../../model/tables';
import { quoteTable } from '../../db/sql';
import { MigrationControl, startMigration } from '../../client/migrations';
import { parseMigrationConfig } from '../../config/load';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import type { MigrationRouter } from '../../router';
import { readStage } from '../../db/stage-store';
import type { MigrationStatus } from '../../model/messages';
import { startRunningWorker } from '../harness/backfill';
import { runCli } from '../harness/cli';
import { freshDatabases, startRouter } from '../harness/router';
import { installQuietRuntime, servers } from '../harness/servers';
import { waitForMigration } from '../harness/migration';

installQuietRuntime();

describe('gates and operator commands', () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  let worker: Awaited<ReturnType<typeof startRunningWorker>>;
  let router: MigrationRouter | undefined;
  let liveRouter: MigrationRouter | undefined;
  const table: TableRef = { schema: 'public', table: 'accounts' };
  const dir = mkdtempSync(path.join(tmpdir(), 'migration-gates-'));

  before(async () => {
    db = await freshDatabases('migration_gates');
    await db.pools.old.query(sampleTableDdl(table));
    await db.pools.new.query(sampleTableDdl(table));
    await seedSampleRows(db.pools.old, table, 200);
    worker = await startRunningWorker('migration-gates', undefined, db.env);
  });

  after(async () => {
    await router?.end();
    await liveRouter?.end();
    await worker.stop();
    await db.end();
    rmSync(dir, { recursive: true, force: true });
  });

  it('start refuses bad input with the reason; a planted shadow mismatch holds the ramp with its reason until an operator approves; abort puts everyone back on old', async () => {
    const migration = `gates-${db.urls.old.split('_').pop()}`;
    const configFile = path.join(dir, 'migration.yaml');
    writeFileSync(
      configFile,
      JSON.stringify({
        name: migration,
        tables: ['public.accounts'],
        temporal: { taskQueue: worker.taskQueue },
        cutover: {
          readSteps: [100],
          stepSoak: '2s',
          approvals: ['switched'],
          gates: { maxShadowMismatchRate: 0.01 },
        },
        verification: { settle: 100 },
        queryBenchmark: { topStatements: 0 },
      }),
    );
    const env = { ...db.env, TEMPORAL_ADDRESS: servers.temporalAddress, MIGRATE_IGNORE_DEV_STACK: '1' };
    const cli = (...args: string[]) => runCli(args, env);

    const unknown = await cli('status', 'no-such-migration');
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^error: there is no migration named no-such-migration/);

    // Bad input: the migration refuses before anything is written, and `start` says why.
    const refusedFile = path.join(dir, 'refused.yaml');
    writeFileSync(
      refusedFile,
      JSON.stringify({
        name: `${migration}-x`,
        tables: ['public.nowhere'],
        temporal: { taskQueue: worker.taskQueue },
      }),
    );
    const refused = await cli('start', '--config', refusedFile);
    assert.equal(refused.code, 2);
    assert.match(
      refused.stderr,
      /^error: migration .*-x failed: table "public"\."nowhere" does not exist on the old database/,
    );
    const password = new URL(db.urls.old).password;
    if (password !== '') assert.ok(!refused.stderr.includes(password), 'no password in the error');
    // Nothing stays behind on either side: what preparing had created went again, helper schema included.
    for (const pool of [db.pools.old, db.pools.new]) {
      const helpers = await pool.query<{ present: boolean }>(
        `SELECT to_regnamespace('live_migrate') IS NOT NULL AS present`,
      );
      assert.equal(helpers.rows[0]?.present, false);
    }

    const start = await cli('start', '--config', configFile);
    assert.equal(start.code, 0, start.stderr);
    assert.match(start.stdout, new RegExp(`started migration ${migration}`));
    assert.match(start.stdout, /prepared: every table checked/);
    const again = await cli('start', '--config', configFile);
    assert.match(again.stdout, /is already running .*nothing changed/);

    const control = new MigrationControl(worker.client, migration);
    const reach = (what: string, ok: (status: MigrationStatus) => boolean) =>
      waitForMigration(control, what, ok);
    await reach('shadow', (status) => status.stage === 'shadow');

    // New now differs from old in one row, where verification can no longer see it.
    await db.pools.new.query(`UPDATE ${quoteTable(table)} SET note = 'planted on new' WHERE id = 7`);
    router = (
      await startRouter('gates', {
        migration,
        old: { connectionString: db.urls.old, max: 4 },
        new: { connectionString: db.urls.new, max: 4 },
        shadow: { sampleRate: 1 },
        stageWatcher: { pollMs: 200, heartbeatMs: 300 },
      })
    ).router;
    let reading = true;
    const reads = (async () => {
      while (reading) {
        const result = await router.query(`SELECT note FROM ${quoteTable(table)} WHERE id = $1`, [7]);
        assert.notEqual(result.rows[0]?.note, 'planted on new', 'the application is answered by old');
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    })();
    let held: MigrationStatus;
    try {
      held = await reach('the shadow gate to hold', (status) => status.held?.kind === 'gate');
    } finally {
      reading = false;
      await reads;
    }
    assert.equal(held.step, 'shadow');
    assert.match(held.held!.reason, /^shadow: shadow mismatch rate: \d+ of \d+ shadow reads differed$/);
    const failed = held.lastGate!.checks.find((check) => check.name === 'shadow mismatch rate')!;
    assert.equal(failed.ok, false);
    assert.ok(failed.value! > 0.01);
    const shown = await cli('status', migration);
    assert.match(shown.stdout, /held: shadow: shadow mismatch rate/);
    assert.match(shown.stdout, /✗ shadow mismatch rate/);

    // Nothing else moves while it holds; a rollback to a later step is refused with the reason.
    const wrongWay = await cli('rollback', migration, '--to', 'switched');
    assert.equal(wrongWay.code, 2);
    assert.match(
      wrongWay.stderr,
      /rollback refused: the migration is at shadow; it can roll back to off, dual_write, not to switched/,
    );
    assert.equal((await readStage(db.pools.old, migration)).stage, 'shadow');

    // Approval releases it: the ramp goes on to live 100% and holds before the switch for approval.
    const approved = await cli('approve', migration);
    assert.equal(approved.code, 0, approved.stderr);
    assert.match(approved.stdout, /approved: shadow: shadow mismatch rate/);
    const waiting = await reach('approval before the switch', (status) => status.held?.kind === 'approval');
    assert.equal(waiting.step, 'live 100%');
    assert.equal((await readStage(db.pools.old, migration)).readPercent, 100);

    // Pause and resume: the status says so.
    assert.equal((await cli('pause', migration)).code, 0);
    await reach('paused', (status) => status.paused);
    assert.equal((await cli('resume', migration)).code, 0);
    await reach('resumed', (status) => !status.paused);

    // Abort: everyone back on old; capture and guards removed; new keeps its rows.
    const aborted = await cli('abort', migration);
    assert.equal(aborted.code, 0, aborted.stderr);
    assert.match(aborted.stdout, /aborted migration .* at live 100%; everyone is on old/);
    const final = await control.result();
    assert.equal(final.phase, 'aborted');
    // The migration's helpers went with it (nothing else used them): routers follow `off` without them.
    const helpers = await db.pools.old.query<{ present: boolean }>(
      `SELECT to_regnamespace('live_migrate') IS NOT NULL AS present`,
    );
    assert.equal(helpers.rows[0]?.present, false);
    for (const pool of [db.pools.old, db.pools.new]) {
      const triggers = await pool.query(
        `SELECT tgname FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal`,
        [quoteTable(table)],
      );
      assert.deepEqual(triggers.rows, []);
    }
    const rows = await db.pools.new.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoteTable(table)}`);
    assert.equal(Number(rows.rows[0]!.n), 200);
    await db.pools.old.query(`UPDATE ${quoteTable(table)} SET note = 'old takes writes' WHERE id = 1`);

    const late = await cli('approve', migration);
    assert.equal(late.code, 2);
    assert.match(late.stderr, /^error: migration .* has ended \(aborted\); approve no longer applies/);
  });

  it('with step-back, a failed live gate goes back one read step and holds with the reason', async () => {
    const migration = `stepback-${db.urls.old.split('_').pop()}`;
    const config = parseMigrationConfig({
      name: migration,
      tables: ['public.accounts'],
      cutover: {
        readSteps: [20, 60, 100],
        stepSoak: '1500ms',
        onGateFailure: 'step-back',
        approvals: ['switched'],
      },
      verification: { settle: 100 },
      queryBenchmark: { topStatements: 0 },
    });
    await startMigration(worker.client, config, worker.taskQueue);
    const control = new MigrationControl(worker.client, migration);
    const reach = (what: string, ok: (status: MigrationStatus) => boolean) =>
      waitForMigration(control, what, ok);
    // New kept the rows the first migration's shadow test changed there: verification reports and
    // repairs them, and holds; verified again, it is clean.
    const stale = await reach(
      'verification to find the rows left different on new',
      (status) => status.held?.kind === 'verification',
    );
    assert.equal(stale.tables[0]!.verification?.differences, 2);
    assert.ok(stale.warnings.some((warning) => /new already holds rows/.test(warning)));
    await control.resume();
    await reach('live 60%', (status) => status.step === 'live 60%');

    // New breaks: its table is gone. Reads routed to new fail there and are answered by old.
    await db.pools.new.query(`ALTER TABLE ${quoteTable(table)} RENAME TO accounts_gone`);
    liveRouter = (
      await startRouter('stepback', {
        migration,
        old: { connectionString: db.urls.old, max: 4 },
        new: { connectionString: db.urls.new, max: 4 },
        stageWatcher: { pollMs: 200, heartbeatMs: 300 },
      })
    ).router;
    let reading = true;
    const reads = (async () => {
      for (let key = 0; reading; key++) {
        const result: { rowCount: number | null } = await liveRouter.query({
          text: `SELECT id FROM ${quoteTable(table)} WHERE id = $1`,
          values: [1 + (key % 200)],
          routingKey: key,
        });
        assert.equal(result.rowCount, 1, 'every read is answered');
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    })();
    let held: MigrationStatus;
    try {
      held = await reach('the live gate to hold', (status) => status.held?.kind === 'gate');
    } finally {
      reading = false;
      await reads;
      await db.pools.new.query(`ALTER TABLE public.accounts_gone RENAME TO ${table.table}`);
    }
    assert.match(
      held.held!.reason,
      /^live 60%: error rate on new: (\d+) of \1 reads on new failed; .*stepped back to live 20%$/,
    );
    assert.equal(held.step, 'live 20%');
    assert.deepEqual(held.rollbacks.at(-1)?.by, 'gate');
    const stage = await readStage(db.pools.old, migration);
    assert.deepEqual([stage.stage, stage.readPercent], ['live', 20]);
    await control.abort('test');
    assert.equal((await control.result()).phase, 'aborted');
  });
});
