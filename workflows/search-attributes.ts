// The custom search attributes this project sets, so the Web UI can list and filter migrations.
// The dev server registers them at start; a real cluster needs `temporal operator search-attribute create`.
// MigrationPhase is `phase:step` (kept for saved searches); MigrationStage and MigrationStep filter
// on each alone.
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const MIGRATION_NAME = defineSearchAttributeKey('MigrationName', SearchAttributeType.KEYWORD);
export const MIGRATION_PHASE = defineSearchAttributeKey('MigrationPhase', SearchAttributeType.KEYWORD);
export const MIGRATION_STAGE = defineSearchAttributeKey('MigrationStage', SearchAttributeType.KEYWORD);
export const MIGRATION_STEP = defineSearchAttributeKey('MigrationStep', SearchAttributeType.KEYWORD);
export const MIGRATION_TABLE = defineSearchAttributeKey('MigrationTable', SearchAttributeType.KEYWORD);
export const MIGRATION_ROWS_COPIED = defineSearchAttributeKey('MigrationRowsCopied', SearchAttributeType.INT);

export const SEARCH_ATTRIBUTES = [
  MIGRATION_NAME,
  MIGRATION_PHASE,
  MIGRATION_STAGE,
  MIGRATION_STEP,
  MIGRATION_TABLE,
  MIGRATION_ROWS_COPIED,
];
