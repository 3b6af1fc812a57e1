// `migrate switch <migration> --dry-run`: what the write switch (workflows/write-switch.ts,
// activities/authority-switch.ts) would do now, as Vitess' dry-run switcher shows it: whether it
// could start (and what it waits for), the routers that must acknowledge the fence and their state,
// the change log it would drain, the sequences it would move and how far, and the guards and capture
// it would install and remove. Changes nothing: it reads the migration's status and its start input
// from Temporal and both databases in read-only sessions.
import type { Client } from '@temporalio/client';
import pg from 'pg';
import { resolveConnection } from '../config/connections';
import type { SiteConfig } from '../config/schema';
import { changeLogBacklog, type ChangeLogBacklog } from '../db/change-log';
import { HELPER_SCHEMA } from '../db/helper-schema';
import { planSequenceMoves, type SequenceMove } from '../db/sequence-plan';
import { listRouters, readStage, SILENT_AFTER_SECONDS } from '../db/stage-store';
import type { ConnectionName } from '../model/connections';
import { OperatorError } from '../model/errors';
import type { MigrationStatus } from '../model/messages';
import { newIsAuthoritative, planSteps, stepLabel, type StagePosition } from '../model/migration-plan';
import { reconciliationWorkflowId } from '../model/ids';
import type { TableRef } from '../model/tables';
import type { MigrationInput } from '../workflows/migration/state';
import { describeConnectionError } from './doctor';
import type { MigrationControl } from './migrations';
import { routerState, type RouterState } from './routers';

/** The switch's default sequence margin (activities/sequences.ts) and fence timeout (write-switch.ts). */
const SEQUENCE_MARGIN = 1000n;
const DEFAULT_FENCE_TIMEOUT_MS = 10_000;

export interface SwitchPreview {
  migration: string;
  step: string;
  phase: string;
  /** to-new: the forward switch into `switched`; to-old: the switch back a rollback would run. */
  direction: 'to-new' | 'to-old';
  from: ConnectionName;
  to: ConnectionName;
  /** The step the switch would lift the fence into. */
  target: string;
  /** True when the switch would start now or on the operator's word (`approve`, `resume`, `rollback`). */
  canStart: boolean;
  /** Why it can or cannot start now and what it waits for, in one sentence. */
  waitsFor: string;
  /** Whether entering `switched` waits for `migrate approve` (cutover.approvals). */
  needsApproval: boolean;
  fence: { stageVersion: number; fenceVersion: number; timeoutMs: number; silentAfterSeconds: number };
  routers: Array<{
    routerId: string;
    host: string | null;
    pid: number | null;
    version: number | null;
    silentSeconds: number;
    state: RouterState;
    /** Live and behind routers must acknowledge the fence; silent and gone ones are not waited for. */
    mustAcknowledge: boolean;
  }>;
  /** The giving side's change log, drained to zero under the fence. */
  changeLog: ChangeLogBacklog & { side: ConnectionName };
  /** Tables reconciliation cannot sync now: the switch would not start while any is left. */
  syncFailures: string[];
  /** Sequences on the receiving side and how far they would move. */
  sequences: SequenceMove[];
  sequenceMargin: string;
  /** The switch's steps in order, with what each would install, remove or wait for. */
  plan: string[];
}

/** The migration's start input (its tables and cutover settings), from its current run's first event. */
async function migrationInput(client: Client, workflowId: string): Promise<MigrationInput> {
  const history = await client.workflowService.getWorkflowExecutionHistory({
    namespace: client.options.namespace,
    execution: { workflowId },
    maximumPageSize: 1,
  });
  const payload = history.history?.events?.[0]?.workflowExecutionStartedEventAttributes?.input?.payloads?.[0];
  if (payload === undefined || payload === null) {
    throw new OperatorError(`cannot read the start input of workflow ${workflowId}`);
  }
  return client.options.loadedDataConverter.payloadConverter.fromPayload<MigrationInput>(payload);
}

/** Where the switch stands: can it start, and what does it wait for. */
export function switchReadiness(
  status: MigrationStatus,
  steps: StagePosition[],
  needsApproval: boolean,
): { direction: SwitchPreview['direction']; target: StagePosition; canStart: boolean; waitsFor: string } {
  const switchedAt = steps.findIndex((step) => step.stage === 'switched');
  const forward = { direction: 'to-new' as const, target: steps[switchedAt]! };
  const name = status.name;
  if (['retired', 'aborted', 'retiring', 'aborting'].includes(status.phase) || status.error !== null) {
    return { ...forward, canStart: false, waitsFor: `the migration is ${status.phase}` };
  }
  if (newIsAuthoritative(steps[status.position]!)) {
    return {
      direction: 'to-old',
      target: steps[switchedAt - 1]!,
      canStart: true,
      waitsFor: `new holds write authority; this is the switch back to old that \`migrate rollback ${name}\` to an earlier step would run now`,
    };
  }
  const held = status.held;
  if (status.position < switchedAt - 1) {
    const left = switchedAt - status.position - 1;
    return {
      ...forward,
      canStart: false,
      waitsFor: `the migration is at ${status.step}${held !== null ? ` (held: ${held.reason})` : ''}; ${left} step${left === 1 ? '' : 's'} to pass before ${stepLabel(steps[switchedAt - 1]!)}, then its soak and gates${needsApproval ? ', then `migrate approve`' : ''}`,
    };
  }
  if (held?.kind === 'approval') {
    return {
      ...forward,
      canStart: true,
      waitsFor: `it waits for \`migrate approve ${name}\` (${held.reason})`,
    };
  }
  if (held?.kind === 'switch-failed') {
    return {
      ...forward,
      canStart: true,
      waitsFor: `it waits for \`migrate resume ${name}\` to try again (${held.reason})`,
    };
  }
  if (held !== null) {
    return {
      ...forward,
      canStart: false,
      waitsFor: `it waits for the ${held.kind} hold to end (${held.reason}); \`migrate resume ${name}\` measures or tries again${held.kind === 'gate' ? ', `migrate approve` overrides' : ''}`,
    };
  }
  return {
    ...forward,
    canStart: false,
    waitsFor: `it waits for ${status.step} to finish its soak and pass its gates${needsApproval ? ', then `migrate approve`' : ''}`,
  };
}

/** A pool whose sessions cannot write, whatever a query tries. */
function readOnlyPool(connectionString: string): pg.Pool {
  const pool = new pg.Pool({
    connectionString,
    max: 2,
    connectionTimeoutMillis: 5000,
    options: '-c default_transaction_read_only=on',
  });
  pool.on('error', () => undefined);
  return pool;
}

/** Whether the helper schema's `table` exists on a side (not before the migration prepared it). */
async function helperTable(pool: pg.Pool, table: string): Promise<boolean> {
  const { rows } = await pool.query<{ installed: boolean }>(
    `SELECT to_regclass('${HELPER_SCHEMA}.${table}') IS NOT NULL AS installed`,
  );
  return rows[0]?.installed === true;
}

/** The switch's steps, in order, with what each would install, remove or wait for. */
function switchPlan(preview: Omit<SwitchPreview, 'plan'>, tables: TableRef[]): string[] {
  const { from, to, fence, changeLog, sequences } = preview;
  const names = tables.map((table) => `${table.schema}.${table.table}`).join(', ');
  const waited = preview.routers.filter((router) => router.mustAcknowledge);
  const moving = sequences.filter((sequence) => sequence.moves);
  return [
    `stop reconciliation ${from} → ${to} (${reconciliationWorkflowId(preview.migration)}) after its batch in hand${preview.syncFailures.length > 0 ? `; it cannot sync ${preview.syncFailures.join(', ')} now, so the switch would not start` : ''}`,
    `raise the write fence (stage version ${fence.fenceVersion}) and wait up to ${fence.timeoutMs / 1000} s for ${waited.length} router${waited.length === 1 ? '' : 's'} to acknowledge${waited.length > 0 ? `: ${waited.map((router) => router.routerId).join(', ')}` : ''} (silent for over ${fence.silentAfterSeconds} s or gone: not waited for); one that does not aborts the switch`,
    `install the write guard on ${from} (${names}): it refuses writes from every role but the migration's`,
    `drain ${from}'s change log to zero: ${changeLog.backlog} entries now${changeLog.backlog > 0 ? `, the oldest ${changeLog.lagSeconds.toFixed(1)} s old` : ''}`,
    `move sequences on ${to} past ${from}'s values plus ${preview.sequenceMargin}: ${moving.length} of ${sequences.length} would move`,
    `install change capture on ${to}; remove change capture on ${from}; remove the write guard on ${to}${to === 'old' ? `; remove the write guard on ${from} (routers write it themselves again)` : ''}`,
    `set the stage ${preview.target}, which lifts the fence: held writes go to ${to}`,
    `start reconciliation ${to} → ${from}`,
  ];
}

export async function readSwitchPreview(
  control: MigrationControl,
  site: SiteConfig,
  env: NodeJS.ProcessEnv,
): Promise<SwitchPreview> {
  const status = await control.status();
  const input = await migrationInput(control.client, control.workflowId);
  const steps = planSteps(input.settings.readSteps);
  const needsApproval = input.settings.approvals.includes('switched');
  const ready = switchReadiness(status, steps, needsApproval);
  const from: ConnectionName = ready.direction === 'to-new' ? 'old' : 'new';
  const to: ConnectionName = ready.direction === 'to-new' ? 'new' : 'old';
  const tables = input.tables.map((table) => table.table);
  const connections = {
    old: resolveConnection('old', site.old, env),
    new: resolveConnection('new', site.new, env),
  };
  const pools = {
    old: readOnlyPool(connections.old.connectionString),
    new: readOnlyPool(connections.new.connectionString),
  };
  let reading: ConnectionName = 'old';
  try {
    const stage = (await helperTable(pools.old, 'stages'))
      ? await readStage(pools.old, status.name)
      : undefined;
    const routers = stage === undefined ? [] : await listRouters(pools.old, status.name);
    reading = from;
    const changeLog = (await helperTable(pools[from], 'change_log'))
      ? await changeLogBacklog(pools[from], status.name)
      : { backlog: 0, lagSeconds: 0 };
    reading = to;
    const sequences = await planSequenceMoves(pools[from], pools[to], tables, SEQUENCE_MARGIN);
    const stageVersion = stage?.version ?? 0;
    const preview: Omit<SwitchPreview, 'plan'> = {
      migration: status.name,
      step: status.step,
      phase: status.phase,
      direction: ready.direction,
      from,
      to,
      target: stepLabel(ready.target),
      canStart: ready.canStart,
      waitsFor: ready.waitsFor,
      needsApproval,
      fence: {
        stageVersion,
        fenceVersion: stageVersion + 1,
        timeoutMs: input.settings.fenceTimeoutMs ?? DEFAULT_FENCE_TIMEOUT_MS,
        silentAfterSeconds: SILENT_AFTER_SECONDS,
      },
      routers: routers.map((router) => {
        const state = routerState(router, stageVersion);
        return {
          routerId: router.routerId,
          host: router.host,
          pid: router.pid,
          version: router.version,
          silentSeconds: router.silentSeconds,
          state,
          mustAcknowledge: state === 'live' || state === 'behind',
        };
      }),
      changeLog: { side: from, ...changeLog },
      syncFailures: status.syncFailures.map((failure) => failure.table),
      sequences,
      sequenceMargin: SEQUENCE_MARGIN.toString(),
    };
    return { ...preview, plan: switchPlan(preview, tables) };
  } catch (err) {
    if (err instanceof OperatorError) throw err;
    throw new OperatorError(describeConnectionError(connections[reading], err));
  } finally {
    await Promise.all([pools.old.end(), pools.new.end()]);
  }
}

export function formatSwitchPreview(preview: SwitchPreview): string[] {
  const lines = [
    `dry run: the write switch of migration ${preview.migration} ${preview.from} → ${preview.to}, into ${preview.target}; nothing was changed`,
    `  now: ${preview.step}, ${preview.phase}`,
    `  ${preview.canStart ? 'could start now' : 'cannot start now'}: ${preview.waitsFor}`,
    `  fence timeout ${preview.fence.timeoutMs / 1000} s; stage version ${preview.fence.stageVersion}, the fence would be version ${preview.fence.fenceVersion}`,
  ];
  if (preview.routers.length === 0) lines.push('  routers: none registered (nothing to wait for)');
  else lines.push(`  routers (${preview.routers.filter((r) => r.mustAcknowledge).length} must acknowledge):`);
  for (const router of preview.routers) {
    lines.push(
      `    ${router.state.toUpperCase().padEnd(6)} ${router.routerId}  ${router.host ?? '?'} pid ${router.pid ?? '?'}: sees version ${router.version ?? '?'}, last heartbeat ${router.silentSeconds.toFixed(1)} s ago${router.mustAcknowledge ? '' : '; not waited for'}`,
    );
  }
  lines.push(
    `  change log on ${preview.changeLog.side}: ${preview.changeLog.backlog} entries, lag ${preview.changeLog.lagSeconds.toFixed(1)} s${preview.syncFailures.length > 0 ? `; reconciliation cannot sync ${preview.syncFailures.join(', ')}` : ''}`,
  );
  if (preview.sequences.length === 0) lines.push(`  sequences on ${preview.to}: none feed these tables`);
  else lines.push(`  sequences on ${preview.to} (margin ${preview.sequenceMargin}):`);
  for (const sequence of preview.sequences) {
    lines.push(
      sequence.descending
        ? `    ${sequence.table}.${sequence.column} (${sequence.sequence}): descending, not supported: the switch would fail and be undone`
        : `    ${sequence.table}.${sequence.column} (${sequence.sequence}): ${sequence.moves ? `${sequence.before} → ${sequence.wanted}` : `stays at ${sequence.before}`} (${preview.from} has handed out or stored up to ${sequence.highestSeen})`,
    );
  }
  lines.push('  steps:');
  preview.plan.forEach((step, i) => lines.push(`    ${i + 1}. ${step}`));
  return lines;
}
