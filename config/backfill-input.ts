// From a migration config to the input of one table's backfill workflow: names and numbers only,
// never a connection string (the worker resolves "old" and "new" from its own environment).
import type { BackfillTableInput } from '../workflows/backfill';
import { qualifiedTableName, type MigrationConfig, type tableSchema } from './schema';
import type { z } from 'zod';

export function backfillInputFor(
  config: MigrationConfig,
  table: z.infer<typeof tableSchema>,
): BackfillTableInput {
  const hotRowsWhere = typeof table === 'string' ? undefined : table.hotRowsWhere;
  const distributionColumn = typeof table === 'string' ? undefined : table.distributionColumn;
  return {
    migration: config.name,
    source: 'old',
    target: 'new',
    table: qualifiedTableName(table),
    chunkSize: config.chunkSize,
    createTargetTable: config.createTables,
    partitions: config.partitions,
    chunksInFlight: config.chunksInFlight,
    chunksPerActivity: config.chunksPerActivity,
    throttle: config.throttle,
    ...(hotRowsWhere !== undefined && { hotRowsWhere }),
    ...(distributionColumn !== undefined && { distributionColumn }),
  };
}
