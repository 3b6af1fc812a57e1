// Reconciliation: runs for the whole migration and keeps the side being filled equal to the
// authoritative side. It drains the change log that capture fills and syncs the keys that
// discrepancy signals name (a failed mirror write, a verifier's finding), re-reading each key from
// the authoritative side. Reports its backlog and lag; continues as new to stay small.
import {
  condition,
  continueAsNew,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { TableRef } from '../activities/inspector';
import type { ConnectionName } from '../config/connections';
import {
  discrepancySignal,
  drainAndStopSignal,
  reconciliationStatusQuery,
  stopSignal,
  type DiscrepancyBatch,
  type ReconciliationStatus,
} from './messages';
import { MIGRATION_NAME, MIGRATION_PHASE } from './search-attributes';

export interface ReconciliationInput {
  migration: string;
  /** The authoritative side, where capture writes the change log. */
  from: ConnectionName;
  to: ConnectionName;
  /** Change log entries, or discrepancy keys of one table, per activity (default 500). */
  batchSize?: number;
  /** How long to wait for new work when everything is drained, in ms (default 1000). */
  idlePollMs?: number;
  /** Carried across continue-as-new. */
  resume?: { status: ReconciliationStatus; queued: DiscrepancyBatch[] };
}

export type ReconciliationResult = ReconciliationStatus;

const { drainChangeLog, syncKeys } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
});

/** Queued keys, by table, deduplicated. */
class DiscrepancyQueue {
  private readonly byTable = new Map<string, { table: TableRef; keys: Map<string, string[]> }>();

  constructor(batches: DiscrepancyBatch[] = []) {
    for (const batch of batches) this.add(batch);
  }

  add(batch: DiscrepancyBatch): void {
    const id = JSON.stringify([batch.table.schema, batch.table.table]);
    const entry = this.byTable.get(id) ?? { table: batch.table, keys: new Map<string, string[]>() };
    for (const key of batch.keys) entry.keys.set(JSON.stringify(key), key);
    this.byTable.set(id, entry);
  }

  get size(): number {
    let total = 0;
    for (const entry of this.byTable.values()) total += entry.keys.size;
    return total;
  }

  /** Removes and returns up to `limit` keys of one table. */
  take(limit: number): DiscrepancyBatch | undefined {
    for (const [id, entry] of this.byTable) {
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

export async function reconciliationWorkflow(input: ReconciliationInput): Promise<ReconciliationResult> {
  const batchSize = input.batchSize ?? 500;
  const queue = new DiscrepancyQueue(input.resume?.queued);
  const status: ReconciliationStatus = input.resume?.status ?? {
    runs: 0,
    backlog: 0,
    changeLogBacklog: 0,
    queuedDiscrepancyKeys: 0,
    lagSeconds: 0,
    entriesApplied: 0,
    keysSynced: 0,
    rowsUpserted: 0,
    rowsDeleted: 0,
    lastDrainAt: null,
    stopping: false,
  };
  status.runs += 1;
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
  upsertSearchAttributes([
    { key: MIGRATION_NAME, value: input.migration },
    { key: MIGRATION_PHASE, value: 'reconciliation' },
  ]);

  // A signal may change it while an activity runs: read it through a call, not a narrowed field.
  const stopNow = () => status.stopping === 'now';
  for (;;) {
    if (stopNow()) return status;
    const discrepancies = queue.take(batchSize);
    if (discrepancies !== undefined) {
      const synced = await syncKeys({ from: input.from, to: input.to, ...discrepancies });
      status.keysSynced += synced.keys;
      status.rowsUpserted += synced.upserted;
      status.rowsDeleted += synced.deleted;
    }
    const drained = await drainChangeLog({ from: input.from, to: input.to, batchSize });
    status.entriesApplied += drained.entries;
    status.keysSynced += drained.keys;
    status.rowsUpserted += drained.upserted;
    status.rowsDeleted += drained.deleted;
    status.changeLogBacklog = drained.backlog;
    status.lagSeconds = drained.lagSeconds;
    status.lastDrainAt = Date.now();
    refresh();
    setCurrentDetails(
      `backlog ${status.backlog} (change log ${status.changeLogBacklog}, discrepancies ${status.queuedDiscrepancyKeys}), lag ${status.lagSeconds.toFixed(1)} s; ${status.keysSynced} keys synced`,
    );
    const idle = drained.entries === 0 && queue.size === 0;
    if ((idle && status.stopping !== false) || stopNow()) return status;
    if (workflowInfo().continueAsNewSuggested) {
      await continueAsNew<typeof reconciliationWorkflow>({
        ...input,
        resume: { status, queued: queue.toBatches() },
      });
    }
    if (idle) await condition(() => queue.size > 0 || status.stopping !== false, input.idlePollMs ?? 1000);
  }
}
