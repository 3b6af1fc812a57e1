// The client helpers' public surface (`pg-live-migrate/client`), for operators' scripts: load a
// migration's config, connect to Temporal as the CLI does, start the migration, read and steer it.
// Needs the Temporal SDK (@temporalio/client, @temporalio/common, @temporalio/workflow), which the
// package lists as optional peers: an application with the router alone does not install it.
export { startMigration, MigrationControl, formatMigrationStatus, type StartedMigration } from './migrations';
export { readBackfillProgress, type BackfillReport } from './backfill-progress';
export { connectClient } from './temporal-connection';
export { resolveTemporalSettings, type TemporalSettings } from '../config/temporal';
export { loadMigrationConfig, loadSiteConfig, parseMigrationConfig, parseSiteConfig } from '../config/load';
export type { MigrationConfig, SiteConfig } from '../config/schema';
export { OperatorError } from '../model/errors';
export { migrationWorkflowId } from '../model/ids';
export type {
  ApproveResult,
  MigrationHold,
  MigrationPhase,
  MigrationStatus,
  RollbackResult,
} from '../model/messages';
