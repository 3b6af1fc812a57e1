// The router's Prometheus metrics (prom-client), per side, so cutover gates and dashboards can read
// them: latency and errors of what runs on each side, the mirror's outcomes, shadow comparisons, the
// circuit breaker and the discrepancy queue. Registered in the router's own registry unless the
// application passes one (one router per registry).
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ConnectionName } from '../model/connections';
import { NO_STATS, type RouterStats } from '../model/gate-stats';
import { countLatency, emptyLatencyCounts } from '../model/latency-throttle';

/** What ran on a side: a read or write of the application, a mirror, or a shadow read. */
export type WorkKind = 'read' | 'write' | 'mirror' | 'shadow';
export type MirrorResult = 'mirrored' | 'failed' | 'timed_out' | 'circuit_open' | 'too_many_keys';
/** `settled`: differed, then old read again agreed with new (a write was in flight). */
export type ShadowResult = 'match' | 'mismatch' | 'settled' | 'failed' | 'skipped_busy' | 'circuit_open';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
/** Durations kept per side and kind before they go into the histogram together. */
export const PENDING_DURATIONS = 256;

/**
 * The durations of one side and kind, observed in batches: prom-client's observe, run on each
 * statement's path, cost a read in `off` 3–5 µs (its code and data cold after every wait on the
 * server), more than the rest of the router's work. Batches go in off the path (setImmediate), and
 * before every scrape.
 */
class DurationTimer {
  private readonly pending = new Float64Array(PENDING_DURATIONS);
  private size = 0;
  private flushing = false;

  constructor(
    private readonly histogram: { observe(value: number): void },
    readonly errors: { inc(): void },
  ) {}

  record(seconds: number): void {
    // Full and its flush not run yet (thousands ending in one turn of the event loop): in at once.
    if (this.size === PENDING_DURATIONS) this.flush();
    this.pending[this.size++] = seconds;
    if (this.size === PENDING_DURATIONS && !this.flushing) {
      this.flushing = true;
      setImmediate(() => this.flush()).unref();
    }
  }

  flush(): void {
    this.flushing = false;
    for (let i = 0; i < this.size; i++) this.histogram.observe(this.pending[i]!);
    this.size = 0;
  }
}

export class RouterMetrics {
  readonly registry: Registry;
  private readonly duration: Histogram<'side' | 'kind'>;
  private readonly errors: Counter<'side' | 'kind'>;
  private readonly mirrors: Counter<'result'>;
  private readonly keysLearned: Counter<'how'>;
  private readonly shadowReads: Counter<'result'>;
  private readonly circuitOpen: Gauge;
  private readonly stageVersion: Gauge<'stage'>;
  private readonly discrepancyKeys: Counter<'result'>;
  private readonly queuedKeys: Gauge;
  private readonly pendingMirrorsGauge: Gauge;
  private readonly fenceWaits: Histogram;
  /** By side, then kind: looked up for every statement. */
  private readonly timers: Record<ConnectionName, Partial<Record<WorkKind, DurationTimer>>> = {
    old: {},
    new: {},
  };

  constructor(labels: { migration: string; router: string }, registry?: Registry) {
    this.registry = registry ?? new Registry();
    if (registry === undefined) this.registry.setDefaultLabels(labels);
    const registers = [this.registry];
    this.duration = new Histogram({
      name: 'live_migrate_router_query_seconds',
      help: 'Time a statement took on one side, by what it was (read, write, mirror, shadow read).',
      labelNames: ['side', 'kind'],
      buckets: LATENCY_BUCKETS,
      registers,
      collect: () => this.flushDurations(),
    });
    this.errors = new Counter({
      name: 'live_migrate_router_errors_total',
      help: 'Statements that failed on one side, by what they were.',
      labelNames: ['side', 'kind'],
      registers,
    });
    this.mirrors = new Counter({
      name: 'live_migrate_router_mirrors_total',
      help: 'Mirrors of committed writes to the other side, by outcome; all but mirrored are queued as discrepancies.',
      labelNames: ['result'],
      registers,
    });
    this.keysLearned = new Counter({
      name: 'live_migrate_router_written_keys_total',
      help: 'How the router learned the keys its writes committed: notice (sent with the write itself) or asked (one request after the write: helpers on the authoritative side older than the notices, or a write of a table no migration captures).',
      labelNames: ['how'],
      registers,
    });
    this.shadowReads = new Counter({
      name: 'live_migrate_router_shadow_reads_total',
      help: 'Sampled reads compared on new in the shadow stage, by outcome.',
      labelNames: ['result'],
      registers,
    });
    this.circuitOpen = new Gauge({
      name: 'live_migrate_router_circuit_open',
      help: '1 while the circuit breaker keeps calls away from the side that is not authoritative.',
      registers,
    });
    this.stageVersion = new Gauge({
      name: 'live_migrate_router_stage_version',
      help: 'The stage store version this router follows, labelled with its stage.',
      labelNames: ['stage'],
      registers,
    });
    this.discrepancyKeys = new Counter({
      name: 'live_migrate_router_discrepancy_keys_total',
      help: 'Distinct keys a failed mirror left different: queued, signalled to reconciliation, or dropped from a full queue.',
      labelNames: ['result'],
      registers,
    });
    this.fenceWaits = new Histogram({
      name: 'live_migrate_router_fence_wait_seconds',
      help: 'How long writes waited at the write fence of a switch.',
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.queuedKeys = new Gauge({
      name: 'live_migrate_router_discrepancy_queue_keys',
      help: 'Discrepancy keys waiting to be signalled to reconciliation.',
      registers,
    });
    this.pendingMirrorsGauge = new Gauge({
      name: 'live_migrate_router_pending_mirrors',
      help: 'Mirrors running that no request waits for (dual_write).',
      registers,
    });
  }

  /** Mirrors running now that no request waits for. */
  pendingMirrors(count: number): void {
    this.pendingMirrorsGauge.set(count);
  }

  /** The counters a router publishes for the migration's gates (gate-stats.ts). */
  readonly stats: RouterStats = { ...NO_STATS };
  /** The application's statements by latency since the last heartbeat, for the copy's brake. */
  private latencyWindow = emptyLatencyCounts();

  /** What a heartbeat publishes: the gates' counters, and the latency window, which starts anew. */
  publishStats(): RouterStats {
    const latency = this.latencyWindow;
    this.latencyWindow = emptyLatencyCounts();
    return { ...this.stats, latency };
  }

  /**
   * Runs `work` and records its duration, and its failure, against the side. What the application
   * waits for also goes into the latency window the copy's brake reads: every read and write, and a
   * mirror when the write waited for it (`applicationWaits`; a mirror that follows off the request's
   * path, or a shadow read, does not).
   */
  time<T>(
    side: ConnectionName,
    kind: WorkKind,
    work: () => Promise<T>,
    applicationWaits = kind !== 'shadow',
  ): Promise<T> {
    const started = performance.now();
    const timer = this.timers[side][kind] ?? this.timerFor(side, kind);
    const finished = (failed: boolean) => {
      const ms = performance.now() - started;
      const seconds = ms / 1000;
      timer.record(seconds);
      if (failed) timer.errors.inc();
      if (applicationWaits) countLatency(this.latencyWindow, ms);
      if (kind !== 'read') return;
      if (side === 'old') {
        this.stats.readsOld++;
        this.stats.readSecondsOld += seconds;
      } else {
        this.stats.readsNew++;
        this.stats.readSecondsNew += seconds;
        if (failed) this.stats.readsNewFailed++;
      }
    };
    return work().then(
      (result) => {
        finished(false);
        return result;
      },
      (err: unknown) => {
        finished(true);
        throw err;
      },
    );
  }

  private timerFor(side: ConnectionName, kind: WorkKind): DurationTimer {
    const timer = new DurationTimer(this.duration.labels(side, kind), this.errors.labels(side, kind));
    this.timers[side][kind] = timer;
    return timer;
  }

  /** Puts the durations not observed yet into the histogram (before each scrape). */
  private flushDurations(): void {
    for (const byKind of Object.values(this.timers)) {
      for (const timer of Object.values(byKind)) timer.flush();
    }
  }

  /** The outcome of the mirror of `writes` writes (one mirror may carry several). */
  mirror(result: MirrorResult, writes = 1): void {
    this.mirrors.inc({ result }, writes);
  }

  /** Writes whose keys came by notice, or were asked for after the write. */
  writtenKeys(how: 'notice' | 'asked'): void {
    this.keysLearned.inc({ how });
  }

  shadow(result: ShadowResult): void {
    this.shadowReads.inc({ result });
    if (result === 'match' || result === 'mismatch' || result === 'settled') this.stats.shadowCompared++;
    if (result === 'mismatch') this.stats.shadowMismatched++;
  }

  circuit(open: boolean): void {
    this.circuitOpen.set(open ? 1 : 0);
  }

  stage(stage: string, version: number): void {
    this.stageVersion.reset();
    this.stageVersion.set({ stage }, version);
  }

  discrepancies(result: 'queued' | 'signalled' | 'dropped', keys: number, queued: number): void {
    if (keys > 0) this.discrepancyKeys.inc({ result }, keys);
    this.queuedKeys.set(queued);
  }

  fenceWait(seconds: number): void {
    this.fenceWaits.observe(seconds);
    this.longestFenceWaitSeconds = Math.max(this.longestFenceWaitSeconds, seconds);
  }

  /** The longest wait at a fence so far (for reports; the histogram has the distribution). */
  longestFenceWaitSeconds = 0;

  /** One counter's value by label, for tests and gates inside the process. */
  async count(name: 'mirrors' | 'shadow' | 'discrepancies' | 'writtenKeys', result: string): Promise<number> {
    const metric = {
      mirrors: this.mirrors,
      shadow: this.shadowReads,
      discrepancies: this.discrepancyKeys,
      writtenKeys: this.keysLearned,
    }[name];
    const { values } = await metric.get();
    const label = (labels: Partial<Record<string, string | number>>) => labels.result ?? labels.how;
    return values.find((value) => label(value.labels) === result)?.value ?? 0;
  }
}
