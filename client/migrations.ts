// The typed client helpers for a migration, used by the CLI and by operators' scripts: start it
// (safe to repeat), read its status, and steer it. Every failure an operator can cause (no such
// migration, a migration that has ended, a command the current step does not allow) becomes an
// OperatorError with one clear line.
import {
  WorkflowFailedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
  type WorkflowExecutionDescription,
} from '@temporalio/client';
import { migrationInputFor } from '../config/migration-input';
import { OperatorError } from '../model/errors';
import type { MigrationConfig } from '../config/schema';
import { migrationWorkflow } from '../workflows';
import { migrationWorkflowId } from '../model/ids';
import {
  abortUpdate,
  approveUpdate,
  migrationStatusQuery,
  pauseSignal,
  resumeSignal,
  rollbackUpdate,
  throttleUpdate,
} from '../workflows/messages';
import {
  throttleRequestProblem,
  type CopyKnobs,
  type ApproveResult,
  type MigrationHold,
  type MigrationStatus,
  type RollbackResult,
  type ThrottleResult,
} from '../model/messages';
import { MIGRATION_NAME } from '../workflows/search-attributes';
import { readLiveStatus, syncLine, tableLines, type LiveStatus } from './live-status';
import { noWorkerReason } from './workers';

export interface StartedMigration {
  workflowId: string;
  /** False when the migration was already running: nothing was started, nothing changed. */
  started: boolean;
}

/** Starts the migration the config describes, or finds it running (its first config stays in force). */
export async function startMigration(
  client: Client,
  config: MigrationConfig,
  taskQueue: string,
): Promise<StartedMigration> {
  const workflowId = migrationWorkflowId(config.name);
  const existing = await describe(client, workflowId);
  if (existing !== undefined && existing.status.name === 'RUNNING') return { workflowId, started: false };
  if (existing !== undefined && existing.status.name === 'COMPLETED') {
    const status = await client.workflow
      .getHandle(workflowId)
      .query(migrationStatusQuery)
      .catch(() => undefined);
    throw new OperatorError(
      `migration ${config.name} has already ended${status !== undefined ? ` (${status.phase})` : ''}; give a new migration a new name`,
    );
  }
  const input = migrationInputFor(config);
  await client.workflow.start(migrationWorkflow, {
    workflowId,
    taskQueue,
    args: [input],
    workflowIdConflictPolicy: 'USE_EXISTING',
    typedSearchAttributes: [{ key: MIGRATION_NAME, value: config.name }],
    // The Web UI's Summary and Details: what this migration moves, fixed for its life.
    staticSummary: `migration ${config.name}: ${config.tables.length} table${config.tables.length === 1 ? '' : 's'} from old to new`,
    staticDetails: `tables: ${input.tables
      .map((table) => `${table.table.schema}.${table.table.table}`)
      .join(', ')}; follow it with \`migrate status ${config.name} --watch\``,
  });
  return { workflowId, started: true };
}

async function describe(
  client: Client,
  workflowId: string,
): Promise<WorkflowExecutionDescription | undefined> {
  try {
    return await client.workflow.getHandle(workflowId).describe();
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  }
}

function cause(err: unknown): string {
  let current = err as Error | undefined;
  while (current?.cause instanceof Error) current = current.cause;
  return current?.message ?? String(err);
}

/** One migration, by name: its status and the operator's commands. */
export class MigrationControl {
  readonly workflowId: string;

  constructor(
    readonly client: Client,
    readonly name: string,
  ) {
    this.workflowId = migrationWorkflowId(name);
  }

  private get handle() {
    return this.client.workflow.getHandle<typeof migrationWorkflow>(this.workflowId);
  }

  /** The migration's workflow, running; or a clear error when it does not exist or has ended. */
  private async running(command: string): Promise<void> {
    const description = await describe(this.client, this.workflowId);
    if (description === undefined) {
      throw new OperatorError(
        `there is no migration named ${this.name} (workflow ${this.workflowId}) in this Temporal namespace; start it with \`migrate start --config FILE\``,
      );
    }
    if (description.status.name !== 'RUNNING') {
      const status = await this.status().catch(() => undefined);
      throw new OperatorError(
        `migration ${this.name} has ended (${status?.phase ?? description.status.name.toLowerCase()}); ${command} no longer applies`,
      );
    }
  }

  /** The migration's status; works on an ended migration too. */
  async status(): Promise<MigrationStatus> {
    try {
      return await this.handle.query(migrationStatusQuery);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) {
        throw new OperatorError(
          `there is no migration named ${this.name} (workflow ${this.workflowId}) in this Temporal namespace`,
        );
      }
      const noWorker = await noWorkerReason(this.client, this.workflowId);
      if (noWorker !== undefined)
        throw new OperatorError(`cannot read migration ${this.name}'s status: ${noWorker}`);
      throw err;
    }
  }

  /** The status with each running backfill's, verification's and reconciliation's live figures. */
  async liveStatus(): Promise<LiveStatus> {
    const started = Date.now();
    return readLiveStatus(this.client, await this.status(), started);
  }

  /**
   * Sets the copy's knobs for every table's backfill, running or to come: the row limit, the
   * latency target, the nice ratio, copying paused; refused with the reason when invalid.
   */
  async throttle(knobs: CopyKnobs, by?: string): Promise<ThrottleResult> {
    const request = { ...knobs, ...(by !== undefined && { by }) };
    const problem = throttleRequestProblem(request);
    if (problem !== null) throw new OperatorError(problem);
    await this.running('throttle');
    return this.update(() => this.handle.executeUpdate(throttleUpdate, { args: [request] }), 'throttle');
  }

  async pause(): Promise<void> {
    await this.running('pause');
    await this.handle.signal(pauseSignal);
  }

  async resume(): Promise<void> {
    await this.running('resume');
    await this.handle.signal(resumeSignal);
  }

  /** Rolls back to `to` (default: one step back) and answers once it has happened. */
  async rollback(to?: string, by?: string): Promise<RollbackResult> {
    await this.running('rollback');
    const target = to ?? (await this.previousStep());
    return this.update(
      () =>
        this.handle.executeUpdate(rollbackUpdate, {
          args: [{ to: target, ...(by !== undefined && { by }) }],
        }),
      'rollback',
    );
  }

  async approve(by?: string): Promise<ApproveResult> {
    await this.running('approve');
    return this.update(
      () => this.handle.executeUpdate(approveUpdate, { args: [{ ...(by !== undefined && { by }) }] }),
      'approve',
    );
  }

  async abort(by?: string): Promise<{ abortedAt: string }> {
    await this.running('abort');
    return this.update(
      () => this.handle.executeUpdate(abortUpdate, { args: [{ ...(by !== undefined && { by }) }] }),
      'abort',
    );
  }

  /**
   * Waits until the migration has prepared (checked every table, installed capture) and returns its
   * status; a refusal (a table without a primary key, say) comes back as an OperatorError.
   */
  async prepared(timeoutMs = 30_000): Promise<MigrationStatus> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const description = await describe(this.client, this.workflowId);
      if (description?.status.name === 'FAILED') await this.result();
      const status = await this.status();
      if (status.phase !== 'preparing' || Date.now() > deadline) return status;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }

  /** Waits until the migration ends; its final status. */
  async result(): Promise<MigrationStatus> {
    try {
      return await this.handle.result();
    } catch (err) {
      if (err instanceof WorkflowFailedError)
        throw new OperatorError(`migration ${this.name} failed: ${cause(err)}`);
      throw err;
    }
  }

  private async previousStep(): Promise<string> {
    const status = await this.status();
    if (status.position === 0) {
      throw new OperatorError(
        `migration ${this.name} is at ${status.step}; there is nothing earlier to roll back to`,
      );
    }
    const previous = status.steps[status.position - 1]!;
    return previous.startsWith('live ') ? `live:${previous.slice(5, -1)}` : previous;
  }

  private async update<T>(send: () => Promise<T>, command: string): Promise<T> {
    try {
      return await send();
    } catch (err) {
      // A validator's rejection and a handler's failure both arrive as the update's failure.
      if (err instanceof WorkflowUpdateFailedError)
        throw new OperatorError(`${command} refused: ${cause(err)}`);
      throw err;
    }
  }
}

/** What releases each kind of hold, in the operator's words. */
const RELEASED_BY: Record<MigrationHold['kind'], string> = {
  approval: 'migrate approve enters it',
  gate: 'migrate resume measures again; approve goes on',
  rollback: 'migrate resume goes forward again',
  'switch-failed': 'migrate resume tries again',
  fence: 'migrate resume tries again',
  retire: 'migrate approve retires it',
  failure: 'mend the cause, then migrate resume',
  sync: 'ends by itself once the table syncs; resume tries now; approve goes on regardless',
  verification: 'migrate resume verifies again; approve accepts the differences',
};

/** A short, human report of a status, for `migrate status` (live figures when given a LiveStatus). */
export function formatMigrationStatus(status: MigrationStatus | LiveStatus, bars = false): string[] {
  const lines = [
    `migration ${status.name}: ${status.step} — ${status.phase}${status.paused && status.phase !== 'paused' ? ' (paused)' : ''}`,
    `  steps: ${status.steps.map((step, i) => (i === status.position ? `[${step}]` : step)).join(' → ')}`,
  ];
  if (status.held !== null) lines.push(`  held: ${status.held.reason} (${RELEASED_BY[status.held.kind]})`);
  for (const failure of status.syncFailures) {
    lines.push(
      `  sync failing: ${failure.table}, ${failure.attempts} tries since ${new Date(failure.since).toISOString()}: ${failure.message}`,
    );
  }
  for (const warning of status.warnings) lines.push(`  warning: ${warning}`);
  if (status.maxRowsPerSecond !== undefined) {
    lines.push(
      `  row limit set by an operator: ${status.maxRowsPerSecond === null ? 'off' : `${status.maxRowsPerSecond} rows/s per table`}`,
    );
  }
  const knobs = status.copyKnobs;
  if (knobs?.latencyRatio !== undefined) {
    lines.push(
      `  latency target set by an operator: ${knobs.latencyRatio === null ? 'off' : `${knobs.latencyRatio}× the application's baseline`}`,
    );
  }
  if (knobs?.niceRatio !== undefined) lines.push(`  nice ratio set by an operator: ${knobs.niceRatio}`);
  if (knobs?.copyPaused === true)
    lines.push('  copying paused by an operator (`migrate throttle --resume-copy`)');
  if (status.verificationRound !== undefined) lines.push(`  verification round ${status.verificationRound}`);
  for (const table of status.tables) lines.push(...tableLines(table, bars));
  if ('sync' in status && status.sync !== null) lines.push(syncLine(status.sync));
  if (status.lastGate !== null) {
    lines.push(
      `  gates at ${status.lastGate.step}: ${status.lastGate.passed ? 'passed' : 'FAILED'} (${status.lastGate.routers} routers)`,
    );
    for (const check of status.lastGate.checks)
      lines.push(`    ${check.ok ? '✓' : '✗'} ${check.name}: ${check.detail}`);
  }
  for (const query of status.queryBenchmark?.queries ?? []) {
    lines.push(
      `  query ${query.name}: p50 ${query.old.p50.toFixed(2)} → ${query.new.p50.toFixed(2)} ms (${query.ratioP50.toFixed(2)}×)`,
    );
  }
  const lastSwitch = status.switches[status.switches.length - 1];
  if (lastSwitch !== undefined) {
    lines.push(
      `  last write switch (${lastSwitch.direction}): ${lastSwitch.switched ? `done, writes waited at most ${lastSwitch.fencedMs} ms` : `did not happen: ${lastSwitch.reason}`}`,
    );
  }
  if (status.soakUntil !== null) lines.push(`  soak until ${new Date(status.soakUntil).toISOString()}`);
  if (status.error !== null) lines.push(`  error: ${status.error}`);
  for (const event of status.events.slice(-5))
    lines.push(`  ${new Date(event.at).toISOString()} ${event.text}`);
  return lines;
}
