// Keys a mirror could not bring to the other side, batched per table and sent as `discrepancy`
// signals to the reconciliation workflow, which re-syncs them from the authoritative side. The queue
// is a speed-up, not the safety net: capture logged every one of these keys in the writer's own
// transaction, and reconciliation drains that log too. So a full queue drops keys (counted and
// logged), and a router without a reconciliation workflow to signal only logs them.
import type { TableRef } from '../model/tables';
import { MESSAGE, type DiscrepancyBatch } from '../model/messages';
import type { Logger } from '../db/logger';
import type { RouterMetrics } from './metrics';

export interface DiscrepancySink {
  send(batch: DiscrepancyBatch): Promise<void>;
}

/**
 * What the router needs of the application's Temporal client (`@temporalio/client`'s Client has it):
 * the router itself depends on no Temporal package.
 */
export interface TemporalClientLike {
  workflow: {
    getHandle(workflowId: string): { signal(signal: string, ...args: unknown[]): Promise<void> };
  };
}

/** Signals the reconciliation workflow `workflowId` through the application's Temporal client. */
export function reconciliationSink(client: TemporalClientLike, workflowId: string): DiscrepancySink {
  // By name: the router loads no workflow code (model/messages.ts).
  return { send: (batch) => client.workflow.getHandle(workflowId).signal(MESSAGE.discrepancy, batch) };
}

export interface DiscrepancyQueueOptions {
  /** How often queued keys are sent, in ms (default 250). */
  flushMs?: number;
  /** Keys per signal (default 500). */
  batchKeys?: number;
  /** Keys held at most; more are dropped (default 100,000). */
  maxKeys?: number;
}

export class DiscrepancyQueue {
  private readonly tables = new Map<string, { table: TableRef; keys: Map<string, string[]> }>();
  private queued = 0;
  private flushing: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  private warnedNoSink = false;
  private readonly batchKeys: number;
  private readonly maxKeys: number;

  constructor(
    private readonly sink: DiscrepancySink | undefined,
    private readonly logger: Logger,
    private readonly metrics: RouterMetrics,
    options: DiscrepancyQueueOptions = {},
  ) {
    this.batchKeys = options.batchKeys ?? 500;
    this.maxKeys = options.maxKeys ?? 100_000;
    this.timer = setInterval(() => void this.flush(), options.flushMs ?? 250);
    this.timer.unref();
  }

  get pendingKeys(): number {
    return this.queued;
  }

  add(table: TableRef, keys: string[][]): void {
    if (this.sink === undefined) {
      if (!this.warnedNoSink) {
        this.logger.warn(
          'no reconciliation workflow is configured for this router: keys a mirror missed reach the other side when reconciliation drains the change log',
        );
        this.warnedNoSink = true;
      }
      this.metrics.discrepancies('dropped', keys.length, this.queued);
      return;
    }
    const id = JSON.stringify([table.schema, table.table]);
    const entry = this.tables.get(id) ?? { table, keys: new Map<string, string[]>() };
    this.tables.set(id, entry);
    let added = 0;
    let dropped = 0;
    for (const key of keys) {
      const keyId = JSON.stringify(key);
      if (entry.keys.has(keyId)) continue;
      if (this.queued >= this.maxKeys) {
        dropped++;
        continue;
      }
      entry.keys.set(keyId, key);
      this.queued++;
      added++;
    }
    this.metrics.discrepancies('queued', added, this.queued);
    if (dropped > 0) {
      this.metrics.discrepancies('dropped', dropped, this.queued);
      this.logger.warn(
        { table: `${table.schema}.${table.table}`, dropped },
        'discrepancy queue is full: these keys reach the other side when reconciliation drains the change log',
      );
    }
  }

  /** Sends everything queued; a batch whose signal fails stays queued for the next flush. */
  flush(): Promise<void> {
    // One flush at a time; `finally` runs after this assignment even when nothing is queued.
    this.flushing ??= this.sendQueued().finally(() => (this.flushing = undefined));
    return this.flushing;
  }

  private async sendQueued(): Promise<void> {
    for (const [id, entry] of this.tables) {
      while (entry.keys.size > 0) {
        const batch = [...entry.keys].slice(0, this.batchKeys);
        try {
          await this.sink!.send({ table: entry.table, keys: batch.map(([, key]) => key) });
        } catch (err) {
          this.logger.warn(
            { err, queued: this.queued },
            'could not signal discrepancies to reconciliation; will retry',
          );
          return;
        }
        for (const [keyId] of batch) entry.keys.delete(keyId);
        this.queued -= batch.length;
        this.metrics.discrepancies('signalled', batch.length, this.queued);
      }
      this.tables.delete(id);
    }
  }

  /** Stops the timer after a last flush. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.flushing;
    await this.flush();
  }
}
