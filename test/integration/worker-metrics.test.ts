// Issue 14, item 4: the worker's Prometheus endpoint, scraped over HTTP from a worker process started
// with MIGRATE_METRICS_PORT while it runs a migration on real servers. The backfill is first held by
// the source's health (two sessions kept active on old against a limit of one), which the throttle
// gauge shows for the migration and table; then it copies, verifies and syncs, and the scrape has
// rows copied, chunks, the throttle's waits, the change log's backlog and lag and verification's
// counts, labelled by migration and table, plus the Temporal SDK's own metrics. Every metric the
// Grafana dashboard queries is in that scrape. A taken port and a bad value are refused in one line.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { MigrationControl, startMigration } from '../../client/migrations';
import { parseMigrationConfig } from '../../config/load';
import { freePort } from '../../provision/ports';
import { projectRoot } from '../../provision/project-paths';
import { sampleTableDdl, seedSampleRows } from '../../provision/sample-table';
import { waitForMigration } from '../harness/migration';
import { freshDatabases, testMigration } from '../harness/router';
import { temporalClient } from '../harness/servers';
import { waitFor, waitUntil } from '../harness/wait';
import { startWorkerProcess, type WorkerProcess } from '../harness/worker-process';
import { dashboardMetricNames, parseScrape, type Sample } from '../harness/prometheus';

const SLEEPER = 'metrics-test-sleeper';

describe("the worker's metrics endpoint", () => {
  let db: Awaited<ReturnType<typeof freshDatabases>>;
  let worker: WorkerProcess;
  let client: Awaited<ReturnType<typeof temporalClient>>;
  let control: MigrationControl;
  let port: number;
  const sleepers: pg.Client[] = [];
  const table = { schema: 'public', table: 'accounts' };
  const rows = 3000;
  const name = testMigration('metrics');
  const taskQueue = `test-${name}`;
  let scrape: Sample[] = [];
  let scrapeText = '';

  const read = async (): Promise<Sample[]> => {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/plain/);
    scrapeText = await response.text();
    return parseScrape(scrapeText);
  };
  const value = (samples: Sample[], metric: string, labels: Record<string, string>): number | undefined =>
    samples.find((s) => s.name === metric && Object.entries(labels).every(([key, v]) => s.labels[key] === v))
      ?.value;
  const ours = { migration: name, table: 'public.accounts' };

  before(async () => {
    db = await freshDatabases('metrics');
    await db.pools.old.query(sampleTableDdl(table));
    await db.pools.new.query(sampleTableDdl(table));
    await seedSampleRows(db.pools.old, table, rows);
    await db.pools.old.query(`ANALYZE ${table.table}`);
    port = await freePort();
    worker = startWorkerProcess(taskQueue, { ...db.env, MIGRATE_METRICS_PORT: String(port) });
    await waitUntil('the worker to run', () => worker.lines.some((line) => line.state === 'RUNNING'));
    client = await temporalClient();
    control = new MigrationControl(client, name);
  });

  after(async () => {
    await control?.abort().catch(() => undefined);
    await Promise.all(sleepers.map((sleeper) => sleeper.end().catch(() => undefined)));
    await worker?.kill('SIGTERM');
    await client?.connection.close();
    await db?.end();
  });

  it('refuses a taken port and a bad value in one line, before connecting anywhere', async () => {
    for (const [setting, expected] of [
      [
        String(port),
        new RegExp(
          `^the metrics port ${port} is taken by another process \\(maybe another worker\\): stop that process, or set MIGRATE_METRICS_PORT`,
        ),
      ],
      ['99999', /^MIGRATE_METRICS_PORT must be a port number from 1 to 65535, or off, not "99999"/],
    ] as const) {
      const refused = startWorkerProcess(`${taskQueue}-refused`, {
        ...db.env,
        MIGRATE_METRICS_PORT: setting,
        TEMPORAL_ADDRESS: '127.0.0.1:1',
      });
      await refused.exited;
      assert.equal(refused.child.exitCode, 1);
      const errors = refused.lines.filter((line) => line.level === 50);
      assert.equal(errors.length, 1, JSON.stringify(refused.lines));
      assert.match(String(errors[0]!.msg), expected);
      assert.doesNotMatch(String(errors[0]!.msg), /\n/);
    }
  });

  it('serves the migration’s figures by migration and table, and the Temporal SDK’s', async () => {
    // Two sessions active on old, past the limit of one: the backfill waits on the source's health.
    for (let i = 0; i < 2; i++) {
      const sleeper = new pg.Client({ connectionString: db.urls.old, application_name: SLEEPER });
      await sleeper.connect();
      sleeper.on('error', () => undefined);
      sleeper.query('SELECT pg_sleep(600)').catch(() => undefined);
      sleepers.push(sleeper);
    }
    const config = parseMigrationConfig({
      name,
      tables: ['public.accounts'],
      chunkSize: 250,
      partitions: 2,
      throttle: { maxActiveConnections: 1, checkIntervalMs: 200, backoffMs: 200 },
      cutover: { approvals: ['shadow'] },
      verification: { settle: 100 },
      queryBenchmark: { topStatements: 0 },
    });
    await startMigration(client, config, taskQueue);

    const held = await waitFor(
      'the throttle gauge to show the backfill held by active connections',
      read,
      (samples) =>
        value(samples, 'live_migrate_backfill_throttled', { ...ours, limit: 'active_connections' }) === 1,
    );
    assert.equal(
      value(held, 'live_migrate_backfill_rows_copied_total', ours) ?? 0,
      0,
      'nothing copied while held',
    );
    assert.ok(
      (value(held, 'live_migrate_source_active_connections', { migration: name, side: 'old' }) ?? 0) >= 2,
    );

    await db.pools.old.query(
      `SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = $1`,
      [SLEEPER],
    );
    await waitForMigration(
      control,
      'the migration to wait for approval of shadow',
      (s) => s.held?.kind === 'approval',
    );
    // Reconciliation keeps draining while the migration waits: its gauges are there by now.
    scrape = await waitFor('a drain batch to be counted', read, (samples) =>
      samples.some((s) => s.name === 'live_migrate_sync_backlog' && s.labels.migration === name),
    );

    const sum = (metric: string, labels: Record<string, string>) =>
      scrape
        .filter((s) => s.name === metric && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
        .reduce((total, s) => total + s.value, 0);
    assert.equal(sum('live_migrate_backfill_rows_copied_total', ours), rows, 'every row copied, once');
    assert.equal(sum('live_migrate_backfill_rows_read_total', ours), rows);
    assert.ok(sum('live_migrate_backfill_chunks_total', ours) >= rows / 250);
    assert.equal(
      value(scrape, 'live_migrate_backfill_throttled', { ...ours, limit: 'active_connections' }),
      0,
    );
    assert.ok(
      sum('live_migrate_backfill_throttle_waits_total', { ...ours, limit: 'active_connections' }) >= 1,
    );
    const sync = { migration: name, direction: 'old_to_new' };
    assert.equal(value(scrape, 'live_migrate_sync_backlog', sync), 0);
    assert.equal(value(scrape, 'live_migrate_sync_lag_seconds', sync), 0);
    assert.notEqual(value(scrape, 'live_migrate_sync_changes_applied_total', sync), undefined);
    assert.ok(sum('live_migrate_verification_rows_total', ours) >= rows, 'verification compared every row');
    assert.equal(sum('live_migrate_verification_differences_total', ours), 0);
    // The Temporal SDK's metrics, through the same endpoint.
    const sdk = scrape.filter((s) => s.name.startsWith('temporal_'));
    assert.ok(
      sdk.some(
        (s) =>
          s.name === 'temporal_activity_execution_latency_seconds_count' &&
          s.labels.activity_type === 'copyChunks' &&
          s.value > 0,
      ),
      `the SDK's activity latency for copyChunks; SDK metrics: ${[...new Set(sdk.map((s) => s.name))].join(', ')}`,
    );
    assert.ok(sdk.every((s) => s.labels.task_queue === undefined || s.labels.task_queue === taskQueue));
    assert.doesNotMatch(scrapeText, new RegExp(new URL(db.migratorUrls.old).password));
    console.log(
      `scrape: ${scrape.length} samples, ${new Set(scrape.map((s) => s.name)).size} metrics (${new Set(sdk.map((s) => s.name)).size} from the SDK)`,
    );
  });

  it('has every metric the Grafana dashboard queries', () => {
    const dashboard = JSON.parse(
      readFileSync(path.join(projectRoot, 'deploy/grafana/dashboards/pg-live-migrate.json'), 'utf8'),
    ) as unknown;
    const names = dashboardMetricNames(dashboard);
    assert.ok(names.size >= 10, `the dashboard queries ${names.size} metrics`);
    const served = new Set(scrape.map((s) => s.name));
    const missing = [...names].filter((metric) => !served.has(metric));
    assert.deepEqual(missing, [], 'metrics the dashboard queries that the worker does not serve');
  });
});
