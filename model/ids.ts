// Workflow ids derived from a migration's name: stable, so starting a migration twice finds the
// one already running, and routers can signal its reconciliation without being told the id.

export function migrationWorkflowId(migration: string): string {
  return `migration-${migration}`;
}

/** The migration's reconciliation, whichever way it syncs (routers send discrepancies here). */
export function reconciliationWorkflowId(migration: string): string {
  return `${migrationWorkflowId(migration)}/reconciliation`;
}
