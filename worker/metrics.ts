// The worker's own Prometheus metrics (prom-client), fed by its activities (activities/metrics.ts):
// rows copied (a counter, so rate() is the copy rate), the source's health as the backfill's throttle
// saw it, the change log's backlog and lag, and what verification compared and found. Each worker
// counts its own work: sum over workers for a migration's totals. Labels are migration, table (or
// side) and a few fixed words; never a URL, a key or a message.
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client';
import type {
  ActivityMetrics,
  DrainFigures,
  DrainScope,
  MigrationTableLabels,
  SourceHealthFigures,
  SourceLimit,
} from '../activities/metrics';
import type { ConnectionName } from '../model/connections';
import type { VerificationCounts } from '../model/verification-counts';

const TABLE = ['migration', 'table'] as const;
const SYNC = ['migration', 'direction'] as const;
const SOURCE = ['migration', 'side'] as const;
const LIMITS: SourceLimit[] = ['probe_latency', 'active_connections', 'replica_lag'];

export class WorkerMetrics implements ActivityMetrics {
  readonly registry = new Registry();
  private readonly rowsCopied: Counter<(typeof TABLE)[number]>;
  private readonly rowsRead: Counter<(typeof TABLE)[number]>;
  private readonly chunks: Counter<(typeof TABLE)[number]>;
  private readonly throttled: Gauge<(typeof TABLE)[number] | 'limit'>;
  private readonly throttleWaits: Counter<(typeof TABLE)[number] | 'limit'>;
  private readonly probeLatency: Gauge<(typeof SOURCE)[number]>;
  private readonly activeConnections: Gauge<(typeof SOURCE)[number]>;
  private readonly replicaLag: Gauge<(typeof SOURCE)[number]>;
  private readonly backlog: Gauge<(typeof SYNC)[number]>;
  private readonly lag: Gauge<(typeof SYNC)[number]>;
  private readonly changesApplied: Counter<(typeof SYNC)[number]>;
  private readonly syncFailing: Gauge<(typeof TABLE)[number] | 'direction'>;
  private readonly verifiedRows: Counter<(typeof TABLE)[number]>;
  private readonly differences: Counter<(typeof TABLE)[number]>;
  private readonly inFlight: Counter<(typeof TABLE)[number]>;
  private readonly repaired: Counter<(typeof TABLE)[number]>;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
      new Counter<L>({ name, help, labelNames, registers });
    const gauge = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
      new Gauge<L>({ name, help, labelNames, registers });
    this.rowsCopied = counter(
      'live_migrate_backfill_rows_copied_total',
      'Rows the backfill wrote to the target in chunks this worker committed; rate() is the copy rate.',
      TABLE,
    );
    this.rowsRead = counter(
      'live_migrate_backfill_rows_read_total',
      'Rows the backfill read from the source in chunks this worker committed (a row already on the target is read, not written).',
      TABLE,
    );
    this.chunks = counter(
      'live_migrate_backfill_chunks_total',
      'Chunks this worker copied and committed, each with its marker.',
      TABLE,
    );
    this.throttled = gauge(
      'live_migrate_backfill_throttled',
      "1 while the last source health check of the table's backfill said wait, by the limit crossed; 0 when it may copy.",
      [...TABLE, 'limit'],
    );
    this.throttleWaits = counter(
      'live_migrate_backfill_throttle_waits_total',
      'Source health checks that made the backfill wait, by the limit crossed.',
      [...TABLE, 'limit'],
    );
    this.probeLatency = gauge(
      'live_migrate_source_probe_latency_seconds',
      "Median of three SELECT 1 on the backfill's source at its last health check.",
      SOURCE,
    );
    this.activeConnections = gauge(
      'live_migrate_source_active_connections',
      "Active client sessions on the backfill's source (the migration's own excluded) at its last health check.",
      SOURCE,
    );
    this.replicaLag = gauge(
      'live_migrate_source_replica_lag_seconds',
      "The source's largest replica replay lag at its last health check.",
      SOURCE,
    );
    this.backlog = gauge(
      'live_migrate_sync_backlog',
      'Change log entries waiting to be synced after the last drain batch (capped at 1,000,000).',
      SYNC,
    );
    this.lag = gauge(
      'live_migrate_sync_lag_seconds',
      'Age of the oldest change log entry after the last drain batch; 0 when the log is empty.',
      SYNC,
    );
    this.changesApplied = counter(
      'live_migrate_sync_changes_applied_total',
      'Change log entries synced to the other side and removed from the log.',
      SYNC,
    );
    this.syncFailing = gauge(
      'live_migrate_sync_failed_entries',
      "Entries of the last drain batch left in the change log because the table's sync failed (0 once it syncs).",
      [...TABLE, 'direction'],
    );
    this.verifiedRows = counter(
      'live_migrate_verification_rows_total',
      'Rows verification compared (on the authoritative side).',
      TABLE,
    );
    this.differences = counter(
      'live_migrate_verification_differences_total',
      'Keys that still differed after the settle delay with no change pending: damage, or a write capture never saw.',
      TABLE,
    );
    this.inFlight = counter(
      'live_migrate_verification_in_flight_total',
      'Keys that differed while a change of theirs was still pending in the change log (writes in flight, not differences).',
      TABLE,
    );
    this.repaired = counter(
      'live_migrate_verification_repaired_total',
      'Differing keys verification synced from the authoritative side.',
      TABLE,
    );
  }

  chunkCopied(labels: MigrationTableLabels, rowsRead: number, rowsCopied: number): void {
    this.rowsCopied.inc(labels, rowsCopied);
    this.rowsRead.inc(labels, rowsRead);
    this.chunks.inc(labels);
  }

  sourceChecked(
    labels: MigrationTableLabels | null,
    source: ConnectionName,
    health: SourceHealthFigures,
  ): void {
    if (labels === null) return; // A check no migration or table can be told for: nothing to label it by.
    for (const limit of LIMITS) this.throttled.set({ ...labels, limit }, health.limit === limit ? 1 : 0);
    if (health.limit != null) this.throttleWaits.inc({ ...labels, limit: health.limit });
    const side = { migration: labels.migration, side: source };
    this.probeLatency.set(side, health.probeLatencyMs / 1000);
    this.activeConnections.set(side, health.activeConnections);
    this.replicaLag.set(side, health.replicaLagSeconds);
  }

  changeLogDrained(scope: DrainScope, drained: DrainFigures): void {
    const labels = { migration: scope.migration, direction: `${scope.from}_to_${scope.to}` };
    this.backlog.set(labels, drained.backlog);
    this.lag.set(labels, drained.lagSeconds);
    this.changesApplied.inc(labels, drained.entries);
    const failing = new Map(drained.failed.map((failure) => [failure.table, failure.entries]));
    // Tables that failed before and synced now go back to 0; the others keep their last figure.
    for (const [table, entries] of failing) this.syncFailing.set({ ...labels, table }, entries);
    const key = JSON.stringify(labels);
    for (const table of this.failingTables.get(key) ?? []) {
      if (!failing.has(table)) this.syncFailing.set({ ...labels, table }, 0);
    }
    this.failingTables.set(key, new Set(failing.keys()));
  }

  private readonly failingTables = new Map<string, Set<string>>();

  rangeVerified(labels: MigrationTableLabels, counts: VerificationCounts): void {
    this.verifiedRows.inc(labels, counts.rowsFrom);
    this.differences.inc(labels, counts.differences);
    this.inFlight.inc(labels, counts.inFlight);
    this.repaired.inc(labels, counts.repaired);
  }
}
