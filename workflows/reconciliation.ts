// Reconciliation: runs for the whole migration and keeps the side being filled equal to the
// authoritative side. It drains the migration's change log that capture fills and syncs the keys
// that discrepancy signals name (a failed mirror write, a verifier's finding), re-reading each key
// from the authoritative side. A table whose sync fails for good (a constraint the other side
// enforces, a schema change, the wrong servers) is set aside and tried again with a growing pause,
// while every other table goes on syncing; its entries stay in the log and count in the backlog.
// Once a failure has lasted a few tries (at once when only an operator can mend it) the migration
// is told, and holds with the cause; it is told again when the failure clears. Reports its backlog,
// lag and failures; continues as new to stay small.
import {
  ActivityFailure,
  ApplicationFailure,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  proxyActivities,
  patched,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { TableRef } from '../model/tables';
import type { ServerBinding } from '../model/servers';
import type { ConnectionName } from '../model/connections';
import { migrationWorkflowId } from '../model/ids';
import { needsOperator } from '../model/lasting-failures';
import {
  discrepancySignal,
  drainAndStopSignal,
  reconciliationStatusQuery,
  retrySyncSignal,
  stopSignal,
  syncTroubleSignal,
} from './messages';
import {
  idleReconciliationStatus,
  type DiscrepancyBatch,
  type ReconciliationStatus,
} from '../model/messages';
import { MIGRATION_NAME, MIGRATION_PHASE } from './search-attributes';

export interface ReconciliationInput {
  migration: string;
  /** The servers the migration was prepared on; bound here when absent (reconciliation run on its own). */
  servers?: ServerBinding;
  /** The authoritative side, where capture writes the change log. */
  from: ConnectionName;
  to: ConnectionName;
  /** Change log entries, or discrepancy keys of one table, per activity (default 500). */
  batchSize?: number;
  /** How long to wait for new work when everything is drained, in ms (default 1000). */
  idlePollMs?: number;
  /** Failed tries in a row after which a failure holds the migration (default 3). */
  holdAfterAttempts?: number;
  /** Carried across continue-as-new. */
  resume?: { status: ReconciliationStatus; queued: DiscrepancyBatch[]; servers: ServerBinding };
}

export type ReconciliationResult = ReconciliationStatus;

/** Whole batches: a table that fails for good comes back as a failure, not a retry (syncer.ts). */
const { drainChangeLog, syncKeys } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '15 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '10 seconds', maximumAttempts: 5 },
});
const { bindServers } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  heartbeatTimeout: '15 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '10 seconds', maximumAttempts: 5 },
});

/** Failures that only an operator can mend hold the migration at once. */
const HOLD_AT_ONCE = new Set(['SchemaChanged', 'WrongServers', 'MigrationRefused']);
/** Patch: a failure retrying cannot heal holds at once too (histories before it held after a few tries). */
const LASTING_HOLD_AT_ONCE = 'lasting-sync-failures-hold-at-once';
/**
 * Patch: a drain that caught up (it left fewer than CAUGHT_UP_BACKLOG entries behind) waits a moment
 * before the next, so that a trickle of writes is drained a few times a second instead of an activity
 * for every few entries (histories before it drained again at once: at 200 writes/s, dozens of
 * activities a second, the Temporal server and the worker spending most of a core on them). A drain
 * that left more behind, however many it applied, drains again at once.
 */
const CATCH_UP_PAUSE = 'reconciliation-catch-up-pause';
/** How long a drain that caught up waits for entries to gather, in ms (at most idlePollMs). */
const CATCH_UP_PAUSE_MS = 250;
/** A drain that leaves fewer entries than this behind has caught up. */
const CAUGHT_UP_BACKLOG = 50;
/** Every table of a batch that failed as a whole. */
export const EVERY_TABLE = '(every table)';
const FIRST_RETRY_MS = 2_000;
const LONGEST_RETRY_MS = 30_000;

/** Queued keys, by table, deduplicated. */
class DiscrepancyQueue {
  private readonly byTable = new Map<string, { table: TableRef; keys: Map<string, string[]> }>();

  constructor(batches: DiscrepancyBatch[] = []) {
    for (const batch of batches) this.add(batch);
  }

  add(batch: DiscrepancyBatch): void {
    const id = `${batch.table.schema}.${batch.table.table}`;
    const entry = this.byTable.get(id) ?? { table: batch.table, keys: new Map<string, string[]>() };
    for (const key of batch.keys) entry.keys.set(JSON.stringify(key), key);
    this.byTable.set(id, entry);
  }

  get size(): number {
    let total = 0;
    for (const entry of this.byTable.values()) total += entry.keys.size;
    return total;
  }

  /** Removes and returns up to `limit` keys of one table not in `skip`. */
  take(limit: number, skip: Set<string>): DiscrepancyBatch | undefined {
    for (const [id, entry] of this.byTable) {
      if (skip.has(id)) continue;
      const keys: string[][] = [];
      for (const [text, key] of entry.keys) {
        if (keys.length >= limit) break;
        keys.push(key);
        entry.keys.delete(text);
      }
      if (entry.keys.size === 0) this.byTable.delete(id);
      if (keys.length > 0) return { table: entry.table, keys };
    }
    return undefined;
  }

  toBatches(): DiscrepancyBatch[] {
    return [...this.byTable.values()].map((entry) => ({
      table: entry.table,
      keys: [...entry.keys.values()],
    }));
  }
}

/** What an activity failure says: the table it names (if any), its words and its code. */
function describeFailure(err: unknown): { table: string; message: string; code: string | null } {
  const cause = err instanceof ActivityFailure && err.cause !== undefined ? err.cause : err;
  if (cause instanceof ApplicationFailure) {
    const details = cause.details?.[0] as { table?: string; sqlState?: string | null } | undefined;
    return {
      table: details?.table ?? EVERY_TABLE,
      message: cause.message,
      code: details?.sqlState ?? cause.type ?? null,
    };
  }
  return { table: EVERY_TABLE, message: cause instanceof Error ? cause.message : String(cause), code: null };
}

export async function reconciliationWorkflow(input: ReconciliationInput): Promise<ReconciliationResult> {
  const batchSize = input.batchSize ?? 500;
  const holdAfter = input.holdAfterAttempts ?? 3;
  const queue = new DiscrepancyQueue(input.resume?.queued);
  const status: ReconciliationStatus = input.resume?.status ?? idleReconciliationStatus();
  status.runs += 1;
  let retryNow = false;
  let toldHolding = JSON.stringify(status.failing.filter((f) => f.holds).map((f) => f.table));
  const refresh = () => {
    status.queuedDiscrepancyKeys = queue.size;
    status.backlog = status.changeLogBacklog + status.queuedDiscrepancyKeys;
  };
  setHandler(reconciliationStatusQuery, () => {
    refresh();
    return status;
  });
  setHandler(discrepancySignal, (batch) => {
    queue.add(batch);
    refresh();
  });
  setHandler(drainAndStopSignal, () => {
    if (status.stopping === false) status.stopping = 'when-drained';
  });
  setHandler(stopSignal, () => {
    status.stopping = 'now';
  });
  setHandler(retrySyncSignal, () => {
    retryNow = true;
    // The migration forgot what it was told: tell it again what still fails after this try.
    toldHolding = '';
  });
  upsertSearchAttributes([
    { key: MIGRATION_NAME, value: input.migration },
    { key: MIGRATION_PHASE, value: 'reconciliation' },
  ]);
  const servers =
    input.resume?.servers ?? input.servers ?? (await bindServers({ migration: input.migration }));
  const scope = { migration: input.migration, servers, from: input.from, to: input.to };

  // ---- Failures: set aside per table, tried again later, told to the migration when they hold. ----
  const failing = new Map(status.failing.map((failure) => [failure.table, failure]));
  const failed = (found: { table: string; message: string; code: string | null }) => {
    const now = Date.now();
    const before = failing.get(found.table);
    const attempts = (before?.attempts ?? 0) + 1;
    failing.set(found.table, {
      ...found,
      since: before?.since ?? now,
      attempts,
      nextTryAt: now + Math.min(LONGEST_RETRY_MS, FIRST_RETRY_MS * 2 ** (attempts - 1)),
      holds:
        attempts >= holdAfter ||
        HOLD_AT_ONCE.has(found.code ?? '') ||
        // A refused password, a missing privilege or object, a constraint: no try heals it.
        (needsOperator(found.code) && patched(LASTING_HOLD_AT_ONCE)),
    });
  };
  const recovered = (table: string) => failing.delete(table);
  const tell = async () => {
    status.failing = [...failing.values()];
    const holding = status.failing.filter((failure) => failure.holds);
    const shown = JSON.stringify(holding.map((failure) => failure.table));
    if (shown === toldHolding) return;
    toldHolding = shown;
    // A reconciliation run on its own (tests, the benchmark) has no migration to tell.
    await getExternalWorkflowHandle(migrationWorkflowId(input.migration))
      .signal(syncTroubleSignal, { failing: holding })
      .catch(() => undefined);
  };
  /** Tables not due for another try yet. */
  const waiting = (): Set<string> => {
    if (retryNow) {
      retryNow = false;
      for (const failure of failing.values()) failure.nextTryAt = Date.now();
    }
    return new Set([...failing.values()].filter((f) => f.nextTryAt > Date.now()).map((f) => f.table));
  };

  const count = (synced: { keys: number; upserted: number; deleted: number }) => {
    status.keysSynced += synced.keys;
    status.rowsUpserted += synced.upserted;
    status.rowsDeleted += synced.deleted;
  };
  // A signal may change it while an activity runs: read it through a call, not a narrowed field.
  const stopNow = () => status.stopping === 'now';
  for (;;) {
    if (stopNow()) return status;
    let skip = waiting();
    let progressed = false;
    const discrepancies = skip.has(EVERY_TABLE) ? undefined : queue.take(batchSize, skip);
    if (discrepancies !== undefined) {
      const table = `${discrepancies.table.schema}.${discrepancies.table.table}`;
      try {
        const synced = await syncKeys({ ...scope, ...discrepancies });
        count(synced);
        recovered(table);
        progressed = true;
      } catch (err) {
        queue.add(discrepancies);
        failed(describeFailure(err));
      }
      skip = waiting();
    }
    let drainedEntries = 0;
    /** What the drain left behind, when it ran. */
    let leftBehind: number | undefined;
    if (!skip.has(EVERY_TABLE)) {
      try {
        const drained = await drainChangeLog({ ...scope, batchSize, skipTables: [...skip] });
        recovered(EVERY_TABLE);
        drainedEntries = drained.entries;
        leftBehind = drained.backlog;
        status.entriesApplied += drained.entries;
        count(drained);
        status.changeLogBacklog = drained.backlog;
        status.lagSeconds = drained.lagSeconds;
        status.lastDrainAt = Date.now();
        const failedNow = new Set(drained.failed.map((f) => f.table));
        for (const table of [...failing.keys()]) {
          if (!skip.has(table) && !failedNow.has(table) && table !== EVERY_TABLE) recovered(table);
        }
        for (const failure of drained.failed) failed(failure);
        progressed ||= drained.entries > 0;
      } catch (err) {
        failed({ ...describeFailure(err), table: EVERY_TABLE });
      }
    }
    await tell();
    refresh();
    setCurrentDetails(
      `backlog ${status.backlog} (change log ${status.changeLogBacklog}, discrepancies ${status.queuedDiscrepancyKeys}), lag ${status.lagSeconds.toFixed(1)} s; ${status.keysSynced} keys synced${
        status.failing.length > 0
          ? `; failing: ${status.failing.map((f) => `${f.table} (${f.attempts} tries): ${f.message}`).join('; ')}`
          : ''
      }`,
    );
    const idle = !progressed && drainedEntries === 0 && queue.size === 0;
    if ((idle && failing.size === 0 && status.stopping !== false) || stopNow()) return status;
    if (workflowInfo().continueAsNewSuggested) {
      await continueAsNew<typeof reconciliationWorkflow>({
        ...input,
        resume: { status, queued: queue.toBatches(), servers },
      });
    }
    const idlePollMs = input.idlePollMs ?? 1000;
    if (!progressed) {
      // Nothing moved: wait for new work, a stop, a retry request, or the next failing table's turn.
      const nextTry = Math.min(...[...failing.values()].map((f) => f.nextTryAt));
      const pause = Math.max(0, Math.min(idlePollMs, nextTry - Date.now()));
      const queued = queue.size;
      await condition(() => queue.size > queued || status.stopping !== false || retryNow, pause);
    } else if (
      leftBehind !== undefined &&
      leftBehind < CAUGHT_UP_BACKLOG &&
      queue.size === 0 &&
      patched(CATCH_UP_PAUSE)
    ) {
      // Caught up with the writes: let the next entries gather (a stop or a retry request ends the wait).
      await condition(
        () => queue.size > 0 || status.stopping !== false || retryNow,
        Math.min(idlePollMs, CATCH_UP_PAUSE_MS),
      );
    }
  }
}
