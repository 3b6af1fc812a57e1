// The second half of a dual write: right after the authoritative commit, the keys that commit wrote
// (noted by the capture trigger for the router's session) are synced to the other side, re-read from
// the authoritative side under the mirror locks, so two racing writes of a row cannot land out of
// order (hazard 3). Once reads go to new (`live`) the application waits for it, so a read on new
// sees its own write, but never longer than the timeout (before then, in `dual_write` and `shadow`,
// it runs off the request's path: pending-mirrors.ts, and the mirrors of one table that come while
// one runs go together in the next), and never fails because of it: a failed, slow or skipped mirror queues
// its keys as discrepancies and the user's request succeeds. If the process dies before the mirror,
// the change log entry that capture wrote in the same transaction brings the keys (hazard 4); once
// a mirror committed, it has those entries deleted (forget.ts), so reconciliation does not sync the
// keys a second time.
import type { ConnectionName } from '../model/connections';
import type { TableRef } from '../model/tables';
import type { SyncKeysInput, SyncKeysResult } from '../db/sync';
import type { Logger } from '../db/logger';
import type { CircuitBreaker } from './circuit-breaker';
import type { DiscrepancyQueue } from './discrepancy-queue';
import type { RouterMetrics } from './metrics';

/**
 * The keys one session wrote since it last asked, by table, with the ids of the change log entries
 * capture wrote for them (none when capture was installed by a version that did not note them);
 * `overflow` when there were too many to list.
 */
export interface WrittenKeys {
  tables: Array<{ table: TableRef; keys: string[][]; entries: string[] }>;
  overflow: boolean;
}

export const NOTHING_WRITTEN: WrittenKeys = { tables: [], overflow: false };

/**
 * Parses the live_migrate.written setting: one JSON [schema, table, [key text...], entry id text]
 * per line (the id missing where capture is older), or '*'.
 */
export function parseWrittenKeys(text: string | null): WrittenKeys {
  if (text === null || text === '') return NOTHING_WRITTEN;
  if (text === '*') return { tables: [], overflow: true };
  return writtenKeysOf(text.split('\n'));
}

/** Keys gathered by table, in the order the tables first came. */
class KeysByTable {
  private readonly byTable = new Map<string, WrittenKeys['tables'][number]>();

  add(table: TableRef, keys: readonly string[][], entries: readonly string[]): void {
    const id = JSON.stringify([table.schema, table.table]);
    const into = this.byTable.get(id) ?? { table, keys: [], entries: [] };
    into.keys.push(...keys);
    into.entries.push(...entries);
    this.byTable.set(id, into);
  }

  written(): WrittenKeys {
    return { tables: [...this.byTable.values()], overflow: false };
  }
}

/** The keys of noted lines (each as in parseWrittenKeys; empty lines are skipped), by table. */
export function writtenKeysOf(lines: readonly string[]): WrittenKeys {
  const gathered = new KeysByTable();
  for (const line of lines) {
    if (line === '') continue;
    const [schema, table, key, entry] = JSON.parse(line) as [string, string, string[], string?];
    gathered.add({ schema, table }, [key], entry === undefined ? [] : [entry]);
  }
  return gathered.written();
}

/** Both sets of keys, as one. */
export function bothWritten(a: WrittenKeys, b: WrittenKeys): WrittenKeys {
  if (a.overflow || b.overflow) return { tables: [], overflow: true };
  if (b.tables.length === 0) return a;
  if (a.tables.length === 0) return b;
  const gathered = new KeysByTable();
  for (const { table, keys, entries } of [...a.tables, ...b.tables]) gathered.add(table, keys, entries);
  return gathered.written();
}

export interface MirrorDeps {
  /** The migration the router follows: its capture notes the keys, its registry names the tables. */
  migration: string;
  mirrorKeys(input: SyncKeysInput): Promise<SyncKeysResult>;
  /** Told the change log entries of `from` whose keys a mirror committed. */
  applied(from: ConnectionName, entries: readonly string[]): void;
  breaker: CircuitBreaker;
  queue: DiscrepancyQueue;
  metrics: RouterMetrics;
  logger: Logger;
  /** How long the application waits for a mirror, in ms. */
  timeoutMs: number;
  /**
   * How long a mirror no write waits for, with none of its table running, waits for more of its
   * table to go with it, in ms (0: it runs at once; asked for each mirror: 0 while a fence is up).
   */
  delayMs: () => number;
}

class MirrorTimeout extends Error {}

/**
 * At most this many keys go in one batch of mirrors no write waits for (a mirror of up to 64 keys
 * reads them as one VALUES list: db/sync.ts).
 */
export const MIRROR_BATCH_KEYS = 64;

/**
 * How long a mirror no write waits for waits for more of its table, by default, in ms: writes that
 * come one after another (a request's few writes, a burst) then go in one mirror instead of each
 * in its own, which on a busy machine shares the cores with the writes after it.
 */
export const MIRROR_DELAY_MS = 10;

/** Keys of one table to mirror together, from how many writes. */
interface MirrorKeys {
  keys: string[][];
  entries: string[];
  writes: number;
}

/** The next batch of a table: its keys, and the promise of its end that its writes wait for. */
interface MirrorBatch extends MirrorKeys {
  done: Promise<void>;
  start: () => void;
  /** Set while the batch waits out the delay (no batch of its table runs). */
  delay: NodeJS.Timeout | undefined;
}

/** Of one direction and table: whether a batch runs, and the batch that comes next. */
interface BatchState {
  running: boolean;
  next: MirrorBatch | undefined;
}

/** Starts the table's next batch (it waits out no delay any more). */
function startNext(state: BatchState): void {
  const batch = state.next;
  if (batch === undefined) return;
  clearTimeout(batch.delay);
  state.next = undefined;
  batch.start();
}

export class Mirror {
  /** Per direction and table: whether a batch of mirrors no write waits for is running, and the next one. */
  private readonly batches = new Map<string, BatchState>();

  constructor(private readonly deps: MirrorDeps) {}

  /**
   * Mirrors what was written; never throws, never waits longer than the timeout per table.
   * `applicationWaits`: the write waits for it (its time is then the application's, for the brake).
   * A mirror no write waits for that comes while another of its table runs goes with the others that
   * came meanwhile, in one mirror after it (batches of up to MIRROR_BATCH_KEYS keys): under a
   * steady load of writes, a few statements per batch instead of per write. Each key is still
   * locked on the other side before it is read (hazard 3), as in a mirror of a multi-row write.
   */
  async mirror(
    from: ConnectionName,
    to: ConnectionName,
    written: WrittenKeys,
    applicationWaits: boolean,
  ): Promise<void> {
    const { metrics, logger } = this.deps;
    if (written.overflow) {
      metrics.mirror('too_many_keys');
      logger.debug('a write touched too many rows to mirror one by one; reconciliation brings them');
    }
    await Promise.all(
      written.tables.map(({ table, keys, entries }) =>
        applicationWaits
          ? this.mirrorTable(from, to, table, { keys, entries, writes: 1 }, true)
          : this.batched(from, to, table, { keys, entries, writes: 1 }),
      ),
    );
  }

  /**
   * Adds the keys to the table's next batch: it starts when the running batch ends or, when none
   * runs, after the delay (or at once when it is full).
   */
  private batched(
    from: ConnectionName,
    to: ConnectionName,
    table: TableRef,
    written: MirrorKeys,
  ): Promise<void> {
    const id = JSON.stringify([from, to, table.schema, table.table]);
    const state = this.batches.get(id) ?? { running: false, next: undefined };
    this.batches.set(id, state);
    const run = (batch: MirrorKeys): Promise<void> => {
      state.running = true;
      return this.mirrorTable(from, to, table, batch, false).finally(() => {
        if (state.next !== undefined) startNext(state);
        else state.running = false;
      });
    };
    const next = state.next;
    if (next !== undefined) {
      if (next.keys.length + written.keys.length > MIRROR_BATCH_KEYS) {
        // The next batch is full: these keys go on their own, beside it.
        return this.mirrorTable(from, to, table, written, false);
      }
      next.keys.push(...written.keys);
      next.entries.push(...written.entries);
      next.writes += written.writes;
      if (next.delay !== undefined && next.keys.length === MIRROR_BATCH_KEYS) startNext(state);
      return next.done;
    }
    const delayMs = this.deps.delayMs();
    if (!state.running && (delayMs <= 0 || written.keys.length >= MIRROR_BATCH_KEYS)) {
      return run(written);
    }
    let start: () => void = () => undefined;
    const started = new Promise<void>((resolve) => (start = resolve));
    const batch: MirrorBatch = {
      keys: [...written.keys],
      entries: [...written.entries],
      writes: written.writes,
      done: Promise.resolve(),
      start,
      delay: undefined,
    };
    batch.done = started.then(() => run(batch));
    state.next = batch;
    if (!state.running) batch.delay = setTimeout(() => startNext(state), delayMs);
    return batch.done;
  }

  /** Starts every batch that waits out the delay now (the write switch's fence is up: it waits for them). */
  hurry(): void {
    for (const state of this.batches.values()) {
      if (state.next?.delay !== undefined) startNext(state);
    }
  }

  /** Mirrors keys of one table; never throws, never waits longer than the timeout. */
  private async mirrorTable(
    from: ConnectionName,
    to: ConnectionName,
    table: TableRef,
    { keys, entries, writes }: MirrorKeys,
    applicationWaits: boolean,
  ): Promise<void> {
    const { breaker, metrics, logger } = this.deps;
    if (!breaker.allow()) {
      metrics.mirror('circuit_open', writes);
      this.deps.queue.add(table, keys);
      return;
    }
    try {
      await this.withinTimeout(
        metrics
          .time(
            to,
            'mirror',
            () => this.deps.mirrorKeys({ migration: this.deps.migration, from, to, table, keys }),
            applicationWaits,
          )
          // Committed (even past the timeout): the entries of these keys are done with.
          .then(() => this.deps.applied(from, entries)),
      );
      breaker.success();
      metrics.mirror('mirrored', writes);
    } catch (err) {
      breaker.failure();
      const timedOut = err instanceof MirrorTimeout;
      metrics.mirror(timedOut ? 'timed_out' : 'failed', writes);
      logger.warn(
        { table: `${table.schema}.${table.table}`, keys: keys.length, err: timedOut ? undefined : err },
        `mirror to ${to} ${timedOut ? `took longer than ${this.deps.timeoutMs} ms` : 'failed'}; the keys are queued for reconciliation`,
      );
      this.deps.queue.add(table, keys);
    }
  }

  private withinTimeout<T>(work: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new MirrorTimeout()), this.deps.timeoutMs);
    });
    // A mirror that outlives its timeout still finishes (or fails) on its own; its keys are queued.
    work.catch(() => undefined);
    return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
  }
}
