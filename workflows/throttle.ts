// The backfill's brake, in workflow code (deterministic: workflow time and durable timers). Before
// each batch of chunks: wait while the source is hurting (the throttler activity says why; or, for a
// gate whose batches look at the source themselves, the batch that last looked), then while the row
// limit's token bucket (model/token-bucket.ts) is in debt. The bucket holds at most one
// second's worth of rows, so a stall (an outage, a restart, a pause) earns no burst afterwards.
// With a nice ratio (gh-ost's), it also rests that fraction of each batch's time before the next.
// Every wait is recorded with its reason.
import { condition, log, patched, proxyActivities, sleep } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ConnectionName } from '../model/connections';
import type { SourceLook } from '../activities/throttler';
import { DEFAULT_THROTTLE, type ThrottleSettings } from '../model/throttle-settings';
import {
  bucketCapacity,
  chunksPerBatch,
  fullBucket,
  refund,
  takeBatch,
  waitBeforeBatch,
  type TokenBucket,
} from '../model/token-bucket';

const { checkSourceHealth } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  heartbeatTimeout: '15 seconds',
  retry: { maximumInterval: '10 seconds' },
});

/**
 * Runs started before the token bucket keep the limit they started with (an average since the run
 * began, in whole activities): their histories replay unchanged.
 */
const TOKEN_BUCKET = 'row-limit-token-bucket';
/** Runs started before the nice ratio never rest (none could set one). */
const NICE_RATIO = 'nice-ratio';

/** How often, at most, one throttle reason is logged (it may hold back every chunk). */
const THROTTLE_LOG_EVERY_MS = 30_000;

export class ThrottleGate {
  private readonly settings: typeof DEFAULT_THROTTLE;
  private lastCheck = Number.NEGATIVE_INFINITY;
  /** The row limit's bucket (model/token-bucket.ts), on workflow time; null without a limit. */
  private bucket: TokenBucket | null;
  /** Rows per second this partition may copy (its share of the table's limit); null = unlimited. */
  private rowsPerSecond: number | null;
  /** Bumped by every change of the limit, so a wait for the old one ends at once. */
  private rateVersion = 0;
  /** The limit before the token bucket (runs started before it): rows since the window's start. */
  private legacyWindowStart = Date.now();
  private legacyRows = 0;
  waitingFor: string | null = null;
  readonly throttled: Record<string, number>;
  /** Rest after each batch, as a fraction of the batch's time (0: none). */
  private niceRatio: number;
  /** Rest owed by the batches finished since the last one started, in ms. */
  private restOwedMs = 0;
  /** Whether the batches' own activity looks at the source (lookInBatches), not checkSourceHealth. */
  private batchesLook = false;
  /** A batch found the source hurting: no batch starts before this (workflow time, ms). */
  private hurtingUntil = Number.NEGATIVE_INFINITY;
  private hurtingReason = '';

  constructor(
    private readonly source: ConnectionName,
    settings: ThrottleSettings | undefined,
    rowsPerSecond: number | null,
    throttled: Record<string, number> = {},
    /** What is throttled, for the log: the backfill or the verification. */
    private readonly what: 'backfill' | 'verification' = 'backfill',
  ) {
    this.settings = { ...DEFAULT_THROTTLE, ...settings };
    this.rowsPerSecond = limited(rowsPerSecond);
    this.bucket = this.rowsPerSecond === null ? null : fullBucket(this.rowsPerSecond, Date.now());
    this.throttled = throttled;
    this.niceRatio = this.settings.niceRatio;
  }

  get nice(): number {
    return this.niceRatio;
  }

  setNice(ratio: number): void {
    this.niceRatio = Math.max(0, ratio);
    if (this.niceRatio === 0) this.restOwedMs = 0;
  }

  /** A batch took `ms` of workflow time: with a nice ratio, the next one waits its share of that. */
  batchTook(ms: number): void {
    if (this.niceRatio > 0) this.restOwedMs += ms * this.niceRatio;
  }

  get rateLimit(): number | null {
    return this.rowsPerSecond;
  }

  setRate(rowsPerSecond: number | null): void {
    const rate = limited(rowsPerSecond);
    this.rowsPerSecond = rate;
    this.rateVersion += 1;
    this.legacyWindowStart = Date.now();
    this.legacyRows = 0;
    // What was taken stays owed; credit is capped at the new rate's capacity.
    this.bucket =
      rate === null
        ? null
        : this.bucket === null
          ? fullBucket(rate, Date.now())
          : { level: Math.min(this.bucket.level, bucketCapacity(rate)), at: this.bucket.at };
  }

  /** Chunks the next activity takes: about a second of the limit, so a batch bursts little. */
  chunksPerBatch(chunkSize: number, chunksPerActivity: number): number {
    if (this.rowsPerSecond === null || !patched(TOKEN_BUCKET)) return chunksPerActivity;
    return chunksPerBatch(this.rowsPerSecond, chunkSize, chunksPerActivity);
  }

  /**
   * From now on each batch's activity looks at the source's health itself (copyChunks'
   * `lookAtSource`, with the limits of batchLook; a look younger than checkIntervalMs serves every
   * batch of the worker), one activity fewer per batch: tell looked what it found.
   */
  lookInBatches(): void {
    this.batchesLook = true;
  }

  /** The limits a batch looks at the source with, when batches look themselves (lookInBatches). */
  batchLook(): SourceLook | undefined {
    if (!this.batchesLook) return undefined;
    const { maxProbeLatencyMs, maxActiveConnections, maxReplicaLagSeconds, checkIntervalMs } = this.settings;
    return { maxProbeLatencyMs, maxActiveConnections, maxReplicaLagSeconds, maxAgeMs: checkIntervalMs };
  }

  /** What a batch's look found: calm (null), or the reason the source hurts (no batch starts for backoffMs). */
  looked(reason: string | null): void {
    if (reason === null || !this.batchesLook) return;
    this.hurtingUntil = Date.now() + this.settings.backoffMs;
    this.hurtingReason = reason;
    this.record('source', reason);
  }

  /** Waits until a batch of about `rows` rows may start. `stopWaiting` ends the wait early (pause). */
  async beforeChunk(rows: number, stopWaiting: () => boolean): Promise<void> {
    if (this.restOwedMs > 0 && patched(NICE_RATIO)) {
      const rest = Math.ceil(this.restOwedMs);
      this.restOwedMs = 0;
      this.record('nice', `nice ratio ${this.niceRatio}: resting ${rest} ms`);
      // A pause ends the rest at once (it waits on its own); so does the ratio going to 0.
      await condition(() => stopWaiting() || this.niceRatio === 0, rest);
      if (stopWaiting()) return;
    }
    if (this.batchesLook && Date.now() < this.hurtingUntil) {
      this.waitingFor = this.hurtingReason;
      await condition(stopWaiting, this.hurtingUntil - Date.now());
    }
    for (;;) {
      if (stopWaiting()) return;
      if (!this.batchesLook && Date.now() - this.lastCheck >= this.settings.checkIntervalMs) {
        const health = await checkSourceHealth({ connection: this.source, limits: this.settings });
        this.lastCheck = health.reason === null ? Date.now() : Number.NEGATIVE_INFINITY;
        if (health.reason !== null) {
          this.record('source', health.reason);
          await sleep(this.settings.backoffMs);
          continue;
        }
      }
      break;
    }
    if (this.rowsPerSecond !== null && !patched(TOKEN_BUCKET)) {
      await this.legacyRateWait(this.rowsPerSecond, rows);
      this.waitingFor = null;
      return;
    }
    for (;;) {
      const rate = this.rowsPerSecond;
      if (rate === null || this.bucket === null) break;
      const wait = waitBeforeBatch(this.bucket, rate, Date.now());
      if (wait === 0) {
        this.bucket = takeBatch(this.bucket, rate, rows, Date.now());
        break;
      }
      this.record('rate', `row rate limit ${rate} rows/s`);
      const version = this.rateVersion;
      // A pause or a new limit ends the wait at once.
      if (await condition(() => stopWaiting() || this.rateVersion !== version, wait)) {
        if (stopWaiting()) return;
      }
    }
    this.waitingFor = null;
  }

  /** A batch took `taken` rows from the bucket and read `read`: the difference goes back. */
  afterBatch(taken: number, read: number): void {
    if (this.bucket !== null && this.rowsPerSecond !== null && read < taken) {
      this.bucket = refund(this.bucket, this.rowsPerSecond, taken - read);
    }
  }

  private async legacyRateWait(rate: number, rows: number): Promise<void> {
    const allowed = ((Date.now() - this.legacyWindowStart) / 1000) * rate;
    const excess = this.legacyRows + rows - allowed;
    if (excess > 0) {
      this.record('rate', `row rate limit ${rate} rows/s`);
      await sleep(Math.ceil((excess / rate) * 1000));
    }
    this.legacyRows += rows;
  }

  /** Per reason: when it was last logged and the waits since (one line per reason every 30 s at most). */
  private readonly logged = new Map<string, { at: number; waits: number }>();

  private record(kind: string, reason: string): void {
    const last = this.logged.get(reason);
    if (last === undefined || Date.now() - last.at >= THROTTLE_LOG_EVERY_MS) {
      log.info(`${this.what} throttled`, { reason, waitsSinceLastLine: last?.waits ?? 0 });
      this.logged.set(reason, { at: Date.now(), waits: 0 });
    } else {
      last.waits += 1;
    }
    this.waitingFor = reason;
    this.throttled[kind] = (this.throttled[kind] ?? 0) + 1;
  }
}

function limited(rowsPerSecond: number | null): number | null {
  return rowsPerSecond !== null && rowsPerSecond > 0 ? rowsPerSecond : null;
}
