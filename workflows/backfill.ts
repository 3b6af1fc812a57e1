// Backfill of one table: walks the primary key in chunks (keyset, never integer arithmetic), one
// activity per chunk, and continues as new before the history grows large. It carries keys and
// counters only, never rows.
import {
  continueAsNew,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { TableRef } from '../activities/inspector';
import type { ConnectionName } from '../config/connections';
import { backfillProgressQuery, type BackfillProgress } from './messages';
import { MIGRATION_NAME, MIGRATION_PHASE, MIGRATION_ROWS_COPIED, MIGRATION_TABLE } from './search-attributes';

export interface BackfillTableInput {
  migration: string;
  source: ConnectionName;
  target: ConnectionName;
  table: TableRef;
  chunkSize: number;
  /** Create the table on the target from the source's definition when it does not exist. */
  createTargetTable?: boolean;
  /** Carried across continue-as-new. */
  resume?: { primaryKey: string[]; after: string[] | null; rowsCopied: number; chunksDone: number };
}

export interface BackfillTableResult {
  rowsCopied: number;
  chunksDone: number;
}

const { describeTable, prepareTargetTable } = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { maximumInterval: '30 seconds' },
});
const { copyChunk } = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  retry: { maximumInterval: '30 seconds' },
});

export async function backfillTableWorkflow(input: BackfillTableInput): Promise<BackfillTableResult> {
  const tableName = `${input.table.schema}.${input.table.table}`;
  const primaryKey = input.resume?.primaryKey ?? (await inspectTables(input)).primaryKey;
  const progress: BackfillProgress = {
    table: tableName,
    rowsCopied: input.resume?.rowsCopied ?? 0,
    chunksDone: input.resume?.chunksDone ?? 0,
    lastKey: input.resume?.after ?? null,
    done: false,
  };
  setHandler(backfillProgressQuery, () => progress);
  upsertSearchAttributes([
    { key: MIGRATION_NAME, value: input.migration },
    { key: MIGRATION_TABLE, value: tableName },
    { key: MIGRATION_PHASE, value: 'backfill' },
  ]);

  for (;;) {
    const chunk = await copyChunk({
      source: input.source,
      target: input.target,
      table: input.table,
      primaryKey,
      after: progress.lastKey,
      limit: input.chunkSize,
    });
    progress.rowsCopied += chunk.rowsWritten;
    if (chunk.rowsRead > 0) progress.chunksDone += 1;
    if (chunk.lastKey !== null) progress.lastKey = chunk.lastKey;
    upsertSearchAttributes([{ key: MIGRATION_ROWS_COPIED, value: progress.rowsCopied }]);
    setCurrentDetails(`${tableName}: ${progress.rowsCopied} rows copied in ${progress.chunksDone} chunks`);
    if (chunk.rowsRead < input.chunkSize) break;
    if (workflowInfo().continueAsNewSuggested) {
      await continueAsNew<typeof backfillTableWorkflow>({
        ...input,
        resume: {
          primaryKey,
          after: progress.lastKey,
          rowsCopied: progress.rowsCopied,
          chunksDone: progress.chunksDone,
        },
      });
    }
  }
  progress.done = true;
  upsertSearchAttributes([{ key: MIGRATION_PHASE, value: 'backfill-done' }]);
  return { rowsCopied: progress.rowsCopied, chunksDone: progress.chunksDone };
}

/** Before any row moves: the target must take the source's rows faithfully (hazard 10). */
async function inspectTables(input: BackfillTableInput) {
  // Histories recorded before the target check existed only described the source.
  if (!patched('prepare-target-table')) {
    return describeTable({ connection: input.source, table: input.table });
  }
  return prepareTargetTable({
    source: input.source,
    target: input.target,
    table: input.table,
    createIfMissing: input.createTargetTable ?? false,
  });
}
