// The write fence of the write switch, as one router keeps it. While the stage store says `fenced`,
// a new write (or transaction) waits, for `fenceWaitMs` at most; a write in flight counts until it
// is done, and when none is, the router acknowledges the fence, so the switch knows no write of this
// router can still land on the side it moves authority away from.
import type { StageWatcher } from '../db/stage-store';
import { RouterError } from './errors';
import type { RouterMetrics } from './metrics';

/** The default of `fenceWaitMs`. */
export const FENCE_WAIT_MS = 30_000;

export class WriteFence {
  /** Writes (and transactions) of this router in flight: the fence is acknowledged at zero. */
  private writesInFlight = 0;
  /** Writes waiting at the fence, woken by every stage change. */
  private readonly waiting = new Set<() => void>();

  constructor(
    private readonly watcher: Pick<StageWatcher, 'current' | 'acknowledgeFence'>,
    private readonly metrics: Pick<RouterMetrics, 'fenceWait'>,
    private readonly waitMs: number = FENCE_WAIT_MS,
  ) {}

  /** Writes in flight now. */
  get inFlight(): number {
    return this.writesInFlight;
  }

  /** After the stage moved: waiting writes look again, and a raised fence is acknowledged if idle. */
  stageChanged(): void {
    for (const check of this.waiting) check();
    this.acknowledgeIfIdle();
  }

  /**
   * Waits while the fence is up, then counts a write in flight until the returned function runs
   * (once; later calls do nothing). Rejects with FENCE_TIMEOUT when the fence stays up too long.
   */
  async enter(): Promise<() => void> {
    if (this.watcher.current.fenced) {
      const started = process.hrtime.bigint();
      await this.lifted();
      this.metrics.fenceWait(Number(process.hrtime.bigint() - started) / 1e9);
    }
    this.writesInFlight++;
    return this.leaver();
  }

  /** The function that ends one write in flight (once; later calls do nothing). */
  private leaver(): () => void {
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.writesInFlight--;
      this.acknowledgeIfIdle();
    };
  }

  /**
   * Counts one more write in flight at once, without waiting at the fence: for work that belongs to
   * a write already in flight (its deferred mirror), taken before that write leaves.
   */
  hold(): () => void {
    this.writesInFlight++;
    return this.leaver();
  }

  /** Acknowledges the fence of the current stage version when no write is in flight. */
  acknowledgeIfIdle(): void {
    const state = this.watcher.current;
    if (state.fenced && this.writesInFlight === 0) void this.watcher.acknowledgeFence(state.version);
  }

  private lifted(): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.waiting.delete(check);
      };
      const check = () => {
        if (!this.watcher.current.fenced) {
          done();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new RouterError(
            'FENCE_TIMEOUT',
            `a write waited ${this.waitMs} ms for the migration's write switch to finish; the switch should have ended or aborted by now: check the migration's status`,
          ),
        );
      }, this.waitMs);
      this.waiting.add(check);
      check();
    });
  }
}
