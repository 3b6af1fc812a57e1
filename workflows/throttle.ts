// The backfill's brake, in workflow code (deterministic: workflow time and durable timers). Before
// each chunk: wait while the source is hurting (the throttler activity says why), then wait as long
// as the row rate limit requires. Every wait is recorded with its reason.
import { log, proxyActivities, sleep } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ConnectionName } from '../model/connections';
import { DEFAULT_THROTTLE, type ThrottleSettings } from '../model/throttle-settings';

const { checkSourceHealth } = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { maximumInterval: '10 seconds' },
});

export class ThrottleGate {
  private readonly settings: typeof DEFAULT_THROTTLE;
  private lastCheck = Number.NEGATIVE_INFINITY;
  private rateWindowStart = Date.now();
  private rowsInRateWindow = 0;
  /** Rows per second this partition may copy (its share of the table's limit); null = unlimited. */
  private rowsPerSecond: number | null;
  waitingFor: string | null = null;
  readonly throttled: Record<string, number>;

  constructor(
    private readonly source: ConnectionName,
    settings: ThrottleSettings | undefined,
    rowsPerSecond: number | null,
    throttled: Record<string, number> = {},
  ) {
    this.settings = { ...DEFAULT_THROTTLE, ...settings };
    this.rowsPerSecond = rowsPerSecond;
    this.throttled = throttled;
  }

  get rateLimit(): number | null {
    return this.rowsPerSecond;
  }

  setRate(rowsPerSecond: number | null): void {
    this.rowsPerSecond = rowsPerSecond;
    this.rateWindowStart = Date.now();
    this.rowsInRateWindow = 0;
  }

  /** Waits until a chunk of about `rows` rows may start. `stopWaiting` ends the wait early (pause). */
  async beforeChunk(rows: number, stopWaiting: () => boolean): Promise<void> {
    for (;;) {
      if (stopWaiting()) return;
      if (Date.now() - this.lastCheck >= this.settings.checkIntervalMs) {
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
    const rate = this.rowsPerSecond;
    if (rate !== null && rate > 0) {
      const allowed = ((Date.now() - this.rateWindowStart) / 1000) * rate;
      const excess = this.rowsInRateWindow + rows - allowed;
      if (excess > 0) {
        this.record('rate', `row rate limit ${rate} rows/s`);
        await sleep(Math.ceil((excess / rate) * 1000));
      }
    }
    this.rowsInRateWindow += rows;
    this.waitingFor = null;
  }

  private record(kind: string, reason: string): void {
    if (this.waitingFor !== reason) log.info('backfill throttled', { reason });
    this.waitingFor = reason;
    this.throttled[kind] = (this.throttled[kind] ?? 0) + 1;
  }
}
