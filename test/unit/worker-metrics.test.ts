// The worker's metrics without servers: where the port comes from and how a bad one is refused, the
// migration and table read back from a workflow id, what the registry records for the activities'
// reports, and the metric names read out of PromQL (which the dashboard test relies on).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { resolveMetricsPort } from '../../config/metrics';
import { parseSiteConfig } from '../../config/load';
import { OperatorError } from '../../model/errors';
import { scopeOfWorkflowId } from '../../model/ids';
import { noCounts } from '../../model/verification-counts';
import { WorkerMetrics } from '../../worker/metrics';
import { configRejection } from '../harness/config';
import { parseScrape, promqlMetricNames } from '../harness/prometheus';

describe('the metrics port', () => {
  const site = parseSiteConfig({ worker: { metricsPort: 9100 } });
  const none = parseSiteConfig({});

  it('is off unless set; --metrics-port wins over MIGRATE_METRICS_PORT, which wins over the config', () => {
    assert.equal(resolveMetricsPort(none, {}, undefined), null);
    assert.equal(resolveMetricsPort(site, {}, undefined), 9100);
    assert.equal(resolveMetricsPort(site, { MIGRATE_METRICS_PORT: '9200' }, undefined), 9200);
    assert.equal(resolveMetricsPort(site, { MIGRATE_METRICS_PORT: '9200' }, '9300'), 9300);
    assert.equal(resolveMetricsPort(site, { MIGRATE_METRICS_PORT: 'off' }, undefined), null);
    assert.equal(resolveMetricsPort(site, { MIGRATE_METRICS_PORT: '' }, undefined), 9100);
    assert.equal(resolveMetricsPort(site, {}, 'off'), null);
  });

  it('refuses what is not a port, in one line naming the setting', () => {
    for (const [env, flag, setting] of [
      [{ MIGRATE_METRICS_PORT: '0' }, undefined, 'MIGRATE_METRICS_PORT'],
      [{ MIGRATE_METRICS_PORT: '65536' }, undefined, 'MIGRATE_METRICS_PORT'],
      [{ MIGRATE_METRICS_PORT: '94 64' }, undefined, 'MIGRATE_METRICS_PORT'],
      [{}, 'abc', '--metrics-port'],
    ] as const) {
      assert.throws(
        () => resolveMetricsPort(none, env, flag),
        (err: Error) =>
          err instanceof OperatorError &&
          err.message.startsWith(`${setting} must be a port number from 1 to 65535, or off`) &&
          !err.message.includes('\n'),
      );
    }
    assert.match(
      configRejection({ worker: { metricsPort: 70000 } }),
      /worker\.metricsPort: must be a port from 1 to 65535/,
    );
  });
});

describe('the migration and table of a workflow id', () => {
  it('reads the ids the migration gives its backfills and their partitions', () => {
    assert.deepEqual(scopeOfWorkflowId('migration-orders-to-citus/backfill-public.orders/main-3'), {
      migration: 'orders-to-citus',
      table: 'public.orders',
    });
    assert.deepEqual(scopeOfWorkflowId('migration-a.b_c/backfill-shop.line_items'), {
      migration: 'a.b_c',
      table: 'shop.line_items',
    });
    assert.deepEqual(scopeOfWorkflowId('migration-orders/reconciliation'), { migration: 'orders' });
    assert.deepEqual(scopeOfWorkflowId('migration-orders/verify-public.orders-1'), { migration: 'orders' });
    assert.deepEqual(scopeOfWorkflowId('backfill-logs-1234/main-1'), {});
  });
});

describe("the worker's metrics registry", () => {
  const scrape = async (metrics: WorkerMetrics) => parseScrape(await metrics.registry.metrics());
  const labels = { migration: 'm', table: 'public.t' };

  it('counts chunks, sets the throttle by limit, and skips a check it cannot label', async () => {
    const metrics = new WorkerMetrics();
    metrics.chunkCopied(labels, 1000, 990);
    metrics.chunkCopied(labels, 500, 500);
    const health = { probeLatencyMs: 2, activeConnections: 70, replicaLagSeconds: 0 };
    metrics.sourceChecked(labels, 'old', { ...health, limit: 'active_connections' });
    metrics.sourceChecked(null, 'old', { ...health, activeConnections: 1, limit: null });
    const samples = await scrape(metrics);
    const get = (name: string, extra: Record<string, string> = {}) =>
      samples.find(
        (s) =>
          s.name === name && Object.entries({ ...labels, ...extra }).every(([k, v]) => s.labels[k] === v),
      )?.value;
    assert.equal(get('live_migrate_backfill_rows_copied_total'), 1490);
    assert.equal(get('live_migrate_backfill_rows_read_total'), 1500);
    assert.equal(get('live_migrate_backfill_chunks_total'), 2);
    assert.equal(get('live_migrate_backfill_throttled', { limit: 'active_connections' }), 1);
    assert.equal(get('live_migrate_backfill_throttled', { limit: 'probe_latency' }), 0);
    assert.equal(get('live_migrate_backfill_throttle_waits_total', { limit: 'active_connections' }), 1);
    const connections = samples.find((s) => s.name === 'live_migrate_source_active_connections');
    assert.deepEqual(connections, {
      name: 'live_migrate_source_active_connections',
      labels: { migration: 'm', side: 'old' },
      value: 70,
    });
    assert.equal(get('live_migrate_source_probe_latency_seconds', {}), undefined, 'by side, not table');
  });

  it('keeps the sync figures of the last batch, and a failing table until it syncs', async () => {
    const metrics = new WorkerMetrics();
    const scope = { migration: 'm', from: 'old', to: 'new' } as const;
    metrics.changeLogDrained(scope, {
      entries: 10,
      backlog: 5,
      lagSeconds: 1.5,
      failed: [{ table: 'public.t', entries: 3 }],
    });
    let samples = await scrape(metrics);
    const find = (name: string) => samples.find((s) => s.name === name)!;
    assert.deepEqual(find('live_migrate_sync_backlog').labels, { migration: 'm', direction: 'old_to_new' });
    assert.equal(find('live_migrate_sync_backlog').value, 5);
    assert.equal(find('live_migrate_sync_lag_seconds').value, 1.5);
    assert.equal(find('live_migrate_sync_failed_entries').value, 3);
    metrics.changeLogDrained(scope, { entries: 3, backlog: 0, lagSeconds: 0, failed: [] });
    samples = await scrape(metrics);
    assert.equal(find('live_migrate_sync_changes_applied_total').value, 13);
    assert.equal(find('live_migrate_sync_backlog').value, 0);
    assert.equal(find('live_migrate_sync_failed_entries').value, 0, 'synced now');
  });

  it('adds up what verification compared and found', async () => {
    const metrics = new WorkerMetrics();
    metrics.rangeVerified(labels, { ...noCounts(), rowsFrom: 100, differences: 2, inFlight: 1, repaired: 2 });
    metrics.rangeVerified(labels, { ...noCounts(), rowsFrom: 50 });
    const samples = await scrape(metrics);
    const value = (name: string) => samples.find((s) => s.name === name)?.value;
    assert.equal(value('live_migrate_verification_rows_total'), 150);
    assert.equal(value('live_migrate_verification_differences_total'), 2);
    assert.equal(value('live_migrate_verification_in_flight_total'), 1);
    assert.equal(value('live_migrate_verification_repaired_total'), 2);
  });
});

describe('metric names in PromQL', () => {
  it('leaves out functions, labels, durations, grouping, keywords and variables', () => {
    assert.deepEqual(
      promqlMetricNames(
        'histogram_quantile(0.95, sum by (le, activity_type) (rate(temporal_activity_execution_latency_seconds_bucket{task_queue=~"$queue"}[$__rate_interval])))',
      ),
      ['temporal_activity_execution_latency_seconds_bucket'],
    );
    assert.deepEqual(
      promqlMetricNames(
        'sum without (instance) (a_total offset 5m) / on(job) group_left(x) b > bool 1e3 and c',
      ),
      ['a_total', 'b', 'c'],
    );
    assert.deepEqual(
      promqlMetricNames('max by (migration) (live_migrate_sync_backlog{migration=~"$migration"})'),
      ['live_migrate_sync_backlog'],
    );
  });
});
