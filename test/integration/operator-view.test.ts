// Issue 14, through the migration workflow on real servers, as an operator sees it: while a
// throttled backfill copies, `migrate status` shows rows of the estimate, percent, rate, ETA, chunks,
// the throttle and the sync backlog, and `--json` the same figures (rows copied not 0); `--watch`
// prints plain reports when not on a terminal; `migrate throttle` validates its value, reaches the
// running backfill and the status shows what was set; `migrate list` and `--version`; the Web UI's
// figures (stage and step search attributes, current details of the backfill and of the migration:
// rows, rows/s, ETA) read back through the Temporal API.
// Speeds and latencies are printed, not asserted.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { readBackfillProgress } from '../../client/backfill-progress';
import type { LiveStatus } from '../../client/live-status';
import { MigrationControl, startMigration } from '../../client/migrations';
import { parseMigrationConfig } from '../../config/load';
import { migrationWorkflowId } from '../../model/ids';
import { projectRoot } from '../../provision/project-paths';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { MIGRATION_ROWS_COPIED, MIGRATION_STAGE, MIGRATION_STEP } from '../../workflows/search-attributes';
import { startRunningWorker } from '../harness/backfill';
import { runCli } from '../harness/cli';
import { waitForMigration } from '../harness/migration';
import { freshDatabases, testMigration } from '../harness/router';
import { installQuietRuntime } from '../harness/servers';
import { waitFor } from '../harness/wait';

installQuietRuntime();

describe("the operator's view of a running migration", () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  let worker: Awaited<ReturnType<typeof startRunningWorker>>;
  const table = { schema: 'public', table: 'accounts' };
  const rows = 30_000;
  const name = testMigration('operator');
  const cliEnv = { ...process.env, MIGRATE_IGNORE_DEV_STACK: '1' };
  let control: MigrationControl;

  before(async () => {
    db = await freshDatabases('operator');
    await db.pools.old.query(sampleTableDdl(table));
    await db.pools.new.query(sampleTableDdl(table));
    await seedSampleRows(db.pools.old, table, rows);
    await db.pools.old.query(`ANALYZE ${table.table}`);
    worker = await startRunningWorker('operator', undefined, db.env);
    const config = parseMigrationConfig({
      name,
      tables: ['public.accounts'],
      chunkSize: 250,
      throttle: { maxRowsPerSecond: 500 },
      cutover: { approvals: ['shadow'] },
      verification: { settle: 100 },
      queryBenchmark: { topStatements: 0 },
    });
    await startMigration(worker.client, config, worker.taskQueue);
    control = new MigrationControl(worker.client, name);
  });

  after(async () => {
    await control.abort().catch(() => undefined);
    await worker.stop();
    await db.end();
  });

  it('shows live progress, rate, ETA, chunks, throttle and sync backlog while the backfill copies', async () => {
    const copying = await waitFor(
      'the backfill to have copied some rows',
      () => control.liveStatus(),
      (s: LiveStatus) =>
        (s.tables[0]?.backfill?.rowsCopied ?? 0) > 0 && (s.tables[0]?.backfill?.rowsPerSecond ?? 0) > 0,
    );
    const live = copying.tables[0]!;
    assert.equal(live.backfillDone, false);
    assert.equal(live.rowsCopied, live.backfill!.rowsCopied, 'the table counts the rows copied so far');
    assert.ok(live.percent !== null && live.percent > 0 && live.percent < 100, `percent ${live.percent}`);
    assert.equal(live.backfill!.maxRowsPerSecond, 500, 'the limit set, not a partition share');
    assert.notEqual(copying.sync, null, 'the sync backlog and lag');

    const started = Date.now();
    const { code, stdout, stderr } = await runCli(['status', name], cliEnv);
    const cliMs = Date.now() - started;
    assert.equal(code, 0, stderr);
    assert.match(stdout, /public\.accounts: \d+ of ~\d+ rows \([\d.]+%\), \d+ rows\/s, ETA /);
    assert.match(stdout, /chunks \d+ done, \d+ in flight; partitions \d+ done, \d+ running/);
    assert.match(stdout, /throttle: .*\(row limit 500 rows\/s\)/);
    assert.match(stdout, /sync: backlog \d+ .*lag [\d.]+ s/);
    assert.doesNotMatch(stdout, new RegExp(new URL(db.urls.old).password));

    const json = await runCli(['status', name, '--json'], cliEnv);
    const parsed = JSON.parse(json.stdout) as LiveStatus;
    assert.ok(
      parsed.tables[0]!.rowsCopied > 0,
      `--json rowsCopied ${parsed.tables[0]!.rowsCopied} while copying`,
    );
    assert.equal(parsed.tables[0]!.backfillDone, false);
    assert.ok(parsed.tables[0]!.backfill !== null && parsed.tables[0]!.backfill.etaSeconds !== null);

    // The Web UI's view of the table's backfill, while it copies: rows copied and current details.
    const backfill = worker.client.workflow.getHandle(
      `${migrationWorkflowId(name)}/backfill-public.accounts`,
    );
    const seen = await waitFor(
      'the backfill to show its rows and rate to the Web UI',
      async () => {
        const description = await backfill.describe();
        const metadata = await backfill.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
        return {
          rows: description.typedSearchAttributes.get(MIGRATION_ROWS_COPIED) ?? 0,
          details: metadata.currentDetails ?? '',
          running: description.status.name === 'RUNNING',
        };
      },
      (ui) => !ui.running || (ui.rows > 0 && /rows\/s/.test(ui.details)),
    );
    assert.ok(seen.running, 'seen while the backfill still copies');
    assert.ok(seen.rows < rows, `rows copied ${seen.rows} while copying`);
    assert.match(
      seen.details,
      /^public\.accounts: \d+ of ~\d+ rows \(\d+%\), \d+ rows\/s, ETA \d+ s; copying/,
    );
    console.log(`Web UI while copying: MigrationRowsCopied ${seen.rows}; details "${seen.details}"`);

    // The migration's own current details carry the backfill's figures while it copies.
    const migrationHandle = worker.client.workflow.getHandle(migrationWorkflowId(name));
    const own = await waitFor(
      "the migration to show the backfill's rows, rate and ETA to the Web UI",
      async () => ({
        details:
          (await migrationHandle.query<{ currentDetails?: string }>('__temporal_workflow_metadata'))
            .currentDetails ?? '',
        phase: (await control.status()).phase,
      }),
      (ui) => ui.phase !== 'backfilling' || /rows\/s, ETA \d+ s/.test(ui.details),
    );
    assert.equal(own.phase, 'backfilling', 'seen while the migration still backfills');
    assert.match(
      own.details,
      new RegExp(
        `^${name}: dual_write, backfilling — public\\.accounts: \\d+ of ~\\d+ rows \\(\\d+%\\), \\d+ rows/s, ETA \\d+ s`,
      ),
    );
    console.log(`Web UI, the migration while copying: "${own.details}"`);

    // The figures behind the latency (printed, not asserted).
    const timed = async <T>(read: () => Promise<T>) => {
      const at = Date.now();
      await read();
      return Date.now() - at;
    };
    const statusMs = await timed(() => control.status());
    const liveMs = await timed(() => control.liveStatus());
    const everyPartitionMs = await timed(() =>
      readBackfillProgress(worker.client, `${migrationWorkflowId(name)}/backfill-public.accounts`, {
        finishedPartitions: true,
      }),
    );
    console.log(
      `status latency: CLI process ${cliMs} ms; status query ${statusMs} ms; live status ${liveMs} ms (read ${parsed.readMs} ms in the CLI); backfill with every partition queried ${everyPartitionMs} ms`,
    );
  });

  it('prints plain reports with --watch when stdout is not a terminal', async () => {
    const { code, stdout, stderr } = await runCli(
      ['status', name, '--watch', '--interval', '0.2', '--count', '2'],
      cliEnv,
    );
    assert.equal(code, 0, stderr);
    assert.equal(stdout.match(/^--- \d{4}-\d\d-\d\dT/gm)?.length, 2, stdout);
    assert.ok(!stdout.includes('\u001b['), 'no ANSI codes when not on a terminal');
  });

  it('throttle validates its value, reaches the running backfill, and the status shows what was set', async () => {
    const set = await runCli(['throttle', name, '--rows-per-second', '1000'], cliEnv);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /row limit 1000 rows\/s per table \(1 backfills running were told\)/);
    const throttled = await waitFor(
      'the backfill to take the new limit',
      () => control.liveStatus(),
      (s: LiveStatus) => s.tables[0]?.backfill?.maxRowsPerSecond === 1000,
    );
    assert.equal(throttled.maxRowsPerSecond, 1000);
    const { stdout } = await runCli(['status', name], cliEnv);
    assert.match(stdout, /row limit set by an operator: 1000 rows\/s per table/);
    assert.match(stdout, /\(row limit 1000 rows\/s\)/);

    for (const bad of ['0', '-5', 'fast', '1.5']) {
      const refused = await runCli(['throttle', name, '--rows-per-second', bad], cliEnv);
      assert.equal(refused.code, 2, `${bad}: ${refused.stdout}`);
      assert.match(refused.stderr, /^error: --rows-per-second takes a whole number/);
      assert.equal(refused.stderr.trim().split('\n').length, 1);
    }
    const missing = await runCli(['throttle', name], cliEnv);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /throttle needs at least one of --rows-per-second N\|off, --latency-target/);

    // The other knobs: the latency target, the nice ratio, and pausing the copy alone.
    const tuned = await runCli(
      ['throttle', name, '--latency-target', '3', '--nice-ratio', '0.5', '--pause-copy'],
      cliEnv,
    );
    assert.equal(tuned.code, 0, tuned.stderr);
    assert.match(
      tuned.stdout,
      /latency target 3× the application's baseline, nice ratio 0\.5, copying paused \(1 backfills running were told\)/,
    );
    const copyPaused = await waitFor(
      'the copy paused',
      () => control.liveStatus(),
      (s: LiveStatus) => s.tables[0]?.backfillDone === true || s.tables[0]?.backfill?.paused === true,
    );
    assert.equal(copyPaused.paused, false, 'only the copy is paused, not the migration');
    const knobs = await runCli(['status', name], cliEnv);
    assert.match(knobs.stdout, /latency target set by an operator: 3× the application's baseline/);
    assert.match(knobs.stdout, /nice ratio set by an operator: 0\.5/);
    assert.match(knobs.stdout, /copying paused by an operator/);
    for (const [args, reason] of [
      [
        ['--latency-target', '1'],
        /the latency target must be a ratio of the application's baseline from 1\.1/,
      ],
      [['--latency-target', 'soon'], /--latency-target takes a ratio/],
      [['--nice-ratio', '-1'], /--nice-ratio takes a number/],
      [['--nice-ratio', '500'], /the nice ratio must be a number from 0 to 100/],
      [['--pause-copy', '--resume-copy'], /contradict each other/],
    ] as const) {
      const refused = await runCli(['throttle', name, ...args], cliEnv);
      assert.equal(refused.code, 2, `${args.join(' ')}: ${refused.stdout}`);
      assert.match(refused.stderr, reason);
    }
    const resumed = await runCli(['throttle', name, '--resume-copy'], cliEnv);
    assert.equal(resumed.code, 0, resumed.stderr);
    // Copying again, resting half of each batch's time after it.
    const rested = await waitFor(
      'a partition resting for the nice ratio',
      () => control.liveStatus(),
      (s: LiveStatus) =>
        s.tables[0]?.backfillDone === true ||
        (s.tables[0]?.backfill?.paused === false && (s.tables[0]?.backfill?.throttled.nice ?? 0) > 0),
    );
    console.log(
      `  nice ratio 0.5: ${rested.tables[0]?.backfill?.throttled.nice ?? 'no'} rests so far${rested.tables[0]?.backfillDone === true ? ' (the copy had ended)' : ''}`,
    );
    assert.equal((await runCli(['throttle', name, '--nice-ratio', '0'], cliEnv)).code, 0);

    const off = await runCli(['throttle', name, '--rows-per-second', 'off'], cliEnv);
    assert.equal(off.code, 0, off.stderr);
    await waitFor(
      'the limit lifted',
      () => control.liveStatus(),
      (s: LiveStatus) =>
        s.tables[0]?.backfillDone === true || s.tables[0]?.backfill?.maxRowsPerSecond === null,
    );
  });

  it('lists migrations with stage and step, prints its version, and shows them to the Web UI', async () => {
    const held = await waitForMigration(
      control,
      'the migration held before shadow',
      (s) => s.held?.kind === 'approval',
    );
    assert.equal(held.tables[0]!.rowsCopied, rows);

    const list = await runCli(['list', '--json'], cliEnv);
    assert.equal(list.code, 0, list.stderr);
    const listed = (
      JSON.parse(list.stdout) as Array<{ name: string; stage: string; step: string; phase: string }>
    ).find((m) => m.name === name);
    assert.deepEqual(
      { stage: listed?.stage, step: listed?.step, phase: listed?.phase },
      { stage: 'dual_write', step: 'dual_write', phase: 'held' },
    );
    const plain = await runCli(['list'], cliEnv);
    assert.match(plain.stdout, new RegExp(`${name} +RUNNING +dual_write +dual_write +held`));

    const version = await runCli(['--version'], cliEnv);
    const expected = (
      JSON.parse(readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { version: string }
    ).version;
    assert.equal(version.stdout.trim(), expected);

    const handle = worker.client.workflow.getHandle(migrationWorkflowId(name));
    const description = await handle.describe();
    assert.equal(description.typedSearchAttributes.get(MIGRATION_STAGE), 'dual_write');
    assert.equal(description.typedSearchAttributes.get(MIGRATION_STEP), 'dual_write');
    assert.equal(await description.staticSummary(), `migration ${name}: 1 table from old to new`);
    assert.match(
      (await description.staticDetails()) ?? '',
      /^tables: public\.accounts; follow it with `migrate status /,
    );
  });
});
