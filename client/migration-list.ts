// `migrate list`: the migrations in the Temporal namespace, newest first, with their stage, step and
// phase as their search attributes show them (the visibility store, so it reads no history).
import type { Client } from '@temporalio/client';
import {
  MIGRATION_NAME,
  MIGRATION_PHASE,
  MIGRATION_STAGE,
  MIGRATION_STEP,
} from '../workflows/search-attributes';

export interface ListedMigration {
  name: string;
  workflowId: string;
  /** Temporal's execution status: RUNNING, COMPLETED, FAILED, TERMINATED, ... */
  status: string;
  stage: string | null;
  step: string | null;
  /** `phase:step`, as the migration last set it. */
  phase: string | null;
  startedAt: string;
}

export async function listMigrations(client: Client, limit = 100): Promise<ListedMigration[]> {
  const found: ListedMigration[] = [];
  for await (const info of client.workflow.list({ query: `WorkflowType = 'migrationWorkflow'` })) {
    const attributes = info.typedSearchAttributes;
    found.push({
      name: attributes.get(MIGRATION_NAME) ?? info.workflowId.replace(/^migration-/, ''),
      workflowId: info.workflowId,
      status: info.status.name,
      stage: attributes.get(MIGRATION_STAGE) ?? null,
      step: attributes.get(MIGRATION_STEP) ?? null,
      phase: attributes.get(MIGRATION_PHASE)?.split(':')[0] ?? null,
      startedAt: info.startTime.toISOString(),
    });
    if (found.length >= limit) break;
  }
  return found;
}

export function formatMigrationList(migrations: ListedMigration[]): string[] {
  if (migrations.length === 0) return ['no migration in this Temporal namespace'];
  return migrations.map(
    (m) =>
      `${m.name.padEnd(24)} ${m.status.padEnd(10)} ${(m.stage ?? '-').padEnd(10)} ${(m.step ?? '-').padEnd(12)} ${(m.phase ?? '-').padEnd(18)} started ${m.startedAt}`,
  );
}
