// Shadow reads: in the `shadow` stage a sample of reads also runs on new, after the application has
// its answer from old and off its path. The two results are compared (row order ignored unless the
// statement orders its rows); a mismatch is counted and logged with the statement's fingerprint and
// normalized text, never with values. What the application receives is always old's result.
// The read on new waits for the mirrors its router had running when old answered (writes answer
// before their mirrors in `shadow`). A write of another router or of an outside writer committed
// between the two reads can still make equal sides look different, so a mismatch is read
// again on both sides by turns, over about a second (SETTLE_WAITS_MS); when two neighbouring reads
// agree, a write was in flight and the comparison counts as `settled`, not as a mismatch. The rate,
// not a single mismatch, is the signal (the migration's gates read it).
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { Logger } from '../db/logger';
import type { CircuitBreaker } from './circuit-breaker';
import type { RouterMetrics } from './metrics';
import type { StatementInfo } from '../db/statement-info';

export interface ShadowOptions {
  /** Share of reads compared on new, 0–1 (default 0.05). */
  sampleRate?: number;
  /** Shadow reads running at once at most; more are skipped (default 4). */
  maxInFlight?: number;
}

/**
 * The pause before each round of reading a mismatch again on both sides, in ms; it counts once every
 * round disagreed. A write the routers mirror settles in the first round. A write that bypassed the
 * routers (an outside writer) reaches new through reconciliation, which drains a few times a second
 * once it has caught up: it settles in a later round, within about a second.
 */
export const SETTLE_WAITS_MS: readonly number[] = [0, 300, 900];

function rowText(row: unknown): string {
  return JSON.stringify(row, (_key, value: unknown) =>
    typeof value === 'bigint' ? value.toString() : value,
  );
}

/** Whether two results hold the same rows (in the same order when `ordered`). */
export function sameRows(a: readonly unknown[], b: readonly unknown[], ordered: boolean): boolean {
  if (a.length !== b.length) return false;
  const left = a.map(rowText);
  const right = b.map(rowText);
  if (!ordered) {
    left.sort();
    right.sort();
  }
  return left.every((row, i) => row === right[i]);
}

export class ShadowReads {
  private inFlight = 0;
  private readonly sampleRate: number;
  private readonly maxInFlight: number;

  constructor(
    options: ShadowOptions,
    private readonly breaker: CircuitBreaker,
    private readonly metrics: RouterMetrics,
    private readonly logger: Logger,
    private readonly random: () => number = Math.random,
    private readonly settleWaitsMs: readonly number[] = SETTLE_WAITS_MS,
  ) {
    this.sampleRate = options.sampleRate ?? 0.05;
    this.maxInFlight = options.maxInFlight ?? 4;
  }

  /** Maybe runs `onNew` and compares it with `primary`; returns at once, never throws. */
  sample(
    info: StatementInfo,
    primary: pg.QueryResult,
    onNew: () => Promise<pg.QueryResult>,
    onOldAgain: () => Promise<pg.QueryResult>,
  ): void {
    if (this.random() >= this.sampleRate) return;
    if (this.inFlight >= this.maxInFlight) {
      this.metrics.shadow('skipped_busy');
      return;
    }
    if (!this.breaker.allow()) {
      this.metrics.shadow('circuit_open');
      return;
    }
    this.inFlight++;
    void this.compare(info, primary, onNew, onOldAgain).finally(() => this.inFlight--);
  }

  private async compare(
    info: StatementInfo,
    primary: pg.QueryResult,
    onNew: () => Promise<pg.QueryResult>,
    onOldAgain: () => Promise<pg.QueryResult>,
  ): Promise<void> {
    let shadow: pg.QueryResult;
    try {
      shadow = await onNew();
      this.breaker.success();
    } catch (err) {
      this.breaker.failure();
      this.metrics.shadow('failed');
      this.logger.warn({ fingerprint: info.fingerprint, err }, 'shadow read on new failed');
      return;
    }
    if (sameRows(primary.rows, shadow.rows, info.ordered)) {
      this.metrics.shadow('match');
      return;
    }
    // Read the sides again by turns (old, new, old, new): two neighbouring reads that agree mean a
    // write was in flight, not that new is wrong.
    try {
      let newRows = shadow.rows;
      for (const wait of this.settleWaitsMs) {
        if (wait > 0) await sleep(wait);
        const oldRows = (await onOldAgain()).rows;
        if (sameRows(oldRows, newRows, info.ordered)) {
          this.metrics.shadow('settled');
          return;
        }
        newRows = (await onNew()).rows;
        if (sameRows(oldRows, newRows, info.ordered)) {
          this.metrics.shadow('settled');
          return;
        }
      }
    } catch {
      // A failed re-read settles nothing: the first comparison stands.
    }
    this.metrics.shadow('mismatch');
    this.logger.warn(
      {
        fingerprint: info.fingerprint,
        statement: info.normalized.slice(0, 500),
        oldRows: primary.rowCount ?? primary.rows.length,
        newRows: shadow.rowCount ?? shadow.rows.length,
      },
      'shadow read: new returned different rows than old',
    );
  }
}
