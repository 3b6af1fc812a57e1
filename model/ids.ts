// Workflow ids derived from a migration's name: stable, so starting a migration twice finds the
// one already running, and routers can signal its reconciliation without being told the id.

export function migrationWorkflowId(migration: string): string {
  return `migration-${migration}`;
}

/** The migration's reconciliation, whichever way it syncs (routers send discrepancies here). */
export function reconciliationWorkflowId(migration: string): string {
  return `${migrationWorkflowId(migration)}/reconciliation`;
}

/**
 * The migration and table a workflow id names, read back from the ids the migration gives its
 * children (workflows/migration/steps.ts): `migration-<name>/backfill-<schema.table>` and its
 * partitions `.../<pass>-<n>`; any other child of a migration names only the migration.
 */
export function scopeOfWorkflowId(workflowId: string): { migration?: string; table?: string } {
  const match = /^migration-([^/]+)(?:\/backfill-([^/]+)(?:\/|$))?/.exec(workflowId);
  if (match === null) return {};
  return { migration: match[1], ...(match[2] !== undefined && { table: match[2] }) };
}
