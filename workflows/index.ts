// The workflow bundle's entry: every workflow type the worker registers.
export { backfillTableWorkflow } from './backfill';
export { backfillPartitionWorkflow } from './backfill-partition';
export { reconciliationWorkflow } from './reconciliation';
export { verificationWorkflow } from './verification';
export { writeSwitchWorkflow } from './write-switch';
export { migrationWorkflow } from './migration';
