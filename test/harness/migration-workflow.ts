// For workflow tests of the migration: its input, the state a run carries into the next (to start a
// test at the step it is about, as a continued run would), and a handle that steers the workflow as
// an operator and its own workflows do, waits for states (never for a duration), and lets the soak
// timers pass through time skipping. Every migration a test starts is ended when the test ends, and,
// with WORKFLOW_TEST_HISTORIES set to a folder, its histories are saved there for a replay.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { WorkflowUpdateFailedError, type WorkflowHandleWithFirstExecutionRunId } from '@temporalio/client';
import { historyToJSON } from '@temporalio/common/lib/proto-utils';
import { DEFAULT_GATES, planSteps, stepLabel } from '../../model/migration-plan';
import type { MigrationHold, MigrationStatus, SyncFailure } from '../../model/messages';
import { migrationWorkflowId } from '../../model/ids';
import { migrationWorkflow } from '../../workflows';
import {
  abortUpdate,
  approveUpdate,
  backfillTroubleSignal,
  migrationStatusQuery,
  pauseSignal,
  resumeSignal,
  rollbackSignal,
  rollbackUpdate,
  syncTroubleSignal,
} from '../../workflows/messages';
import type { MigrationInput, MigrationSettings } from '../../workflows/migration';
import { initialMemory } from '../../workflows/migration/state';
import { SERVERS, type FakeActivities } from './fake-activities';
import { historyFileName } from './workflow-histories';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { SUGGEST_CONTINUE_AS_NEW_AFTER } from './suggest-continue-as-new';

/** The time-skipping server and the task queue its worker polls (time-skipping.ts). */
interface TimeSkipping {
  env: TestWorkflowEnvironment;
  taskQueue: string;
}

type WorkflowStartHandle = WorkflowHandleWithFirstExecutionRunId<typeof migrationWorkflow>;

export type CarriedState = NonNullable<MigrationInput['resume']>;

export const STEP_SOAK_MS = 10 * 60_000;
export const COMPLETION_SOAK_MS = 14 * 24 * 3600_000;

export function migrationSettings(overrides: Partial<MigrationSettings> = {}): MigrationSettings {
  return {
    readSteps: [25, 100],
    stepSoakMs: STEP_SOAK_MS,
    completionSoakMs: COMPLETION_SOAK_MS,
    onGateFailure: 'hold',
    approvals: [],
    gates: DEFAULT_GATES,
    fenceTimeoutMs: 10_000,
    verification: { chunkSize: 1000, partitions: 1, settleMs: 100 },
    queryBenchmark: { queries: [], topStatements: 0, runs: 1 },
    ...overrides,
  };
}

/** A migration of `tables` (default public.orders) with `settings` over the defaults above. */
export function migrationInput(
  name: string,
  settings: Partial<MigrationSettings> = {},
  tables: string[] = ['public.orders'],
): MigrationInput {
  return {
    name,
    tables: tables.map((qualified) => {
      const [schema, table] = qualified.split('.') as [string, string];
      return { migration: name, source: 'old', target: 'new', table: { schema, table }, chunkSize: 1000 };
    }),
    settings: migrationSettings(settings),
  };
}

/**
 * What a run that arrived at `step` (a label: "off", "live 25%", ...) carries into the next one:
 * prepared, every table backfilled, verified clean, the step's own work not done yet.
 */
export function carriedAt(
  input: MigrationInput,
  step: string,
  changes: Partial<CarriedState> = {},
): CarriedState {
  const steps = planSteps(input.settings.readSteps);
  const position = steps.findIndex((candidate) => stepLabel(candidate) === step);
  if (position < 0) throw new Error(`no step ${step} in ${steps.map(stepLabel).join(', ')}`);
  const at = steps[position]!;
  const fresh = initialMemory(input);
  return {
    ...fresh,
    status: {
      ...fresh.status,
      phase: 'gating',
      step,
      stage: at.stage,
      readPercent: at.readPercent,
      position,
      tables: fresh.status.tables.map((table) => ({
        ...table,
        estimatedRows: 100,
        rowsCopied: position > 1 ? 100 : 0,
        backfillDone: position > 1,
      })),
      verifiedClean: position > 1 ? true : null,
      runs: 1,
    },
    prepared: true,
    verificationRounds: position > 1 ? 1 : 0,
    servers: SERVERS,
    ...changes,
  };
}

export function syncFailure(
  table: string,
  code: string | null,
  message = 'duplicate key value',
): SyncFailure {
  return { table, message, code, since: 0, attempts: 3, nextTryAt: 0, holds: true };
}

/**
 * A migration carried to dual_write whose backfill (of its first table) waits for its plan at a gate
 * the test opens: it is backfilling when this returns.
 */
export async function backfillingMigration(
  ts: TimeSkipping,
  fakes: FakeActivities,
  name: string,
  settings: Partial<MigrationSettings> = {},
) {
  const planned = fakes.gate();
  fakes.on('planPartitions', async (_input, call) => {
    if (call.workflowType === 'backfillTableWorkflow') await planned.opened;
    return { partitions: [], maxKey: null };
  });
  const input = migrationInput(name, settings);
  const migration = await MigrationUnderTest.start(ts, { ...input, resume: carriedAt(input, 'dual_write') });
  await migration.until('backfilling', (status) => status.phase === 'backfilling');
  const { schema, table } = input.tables[0]!.table;
  const backfill = migration.handle.client.getHandle(
    `${migration.handle.workflowId}/backfill-${schema}.${table}`,
  );
  return { migration, planned, backfill };
}

/** The reason an update was refused with (its validator's or the main loop's answer). */
export async function refusal(update: Promise<unknown>): Promise<string> {
  const err = await update.then(
    () => assert.fail('the update was accepted'),
    (error: unknown) => error,
  );
  assert.ok(err instanceof WorkflowUpdateFailedError, String(err));
  return (err.cause as Error).message;
}

const started: MigrationUnderTest[] = [];

/** `work`, or a failure saying `what` when it takes more than 30 s of real time. */
async function withinRealTime<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(what)), 30_000);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

export class MigrationUnderTest {
  private constructor(
    private readonly ts: TimeSkipping,
    readonly handle: WorkflowStartHandle,
    readonly input: MigrationInput,
  ) {}

  /** Starts the migration; `suggestContinueAsNewAfter` makes the test interceptor suggest it (events). */
  static async start(
    ts: TimeSkipping,
    input: MigrationInput,
    options: { suggestContinueAsNewAfter?: number } = {},
  ): Promise<MigrationUnderTest> {
    const handle = await ts.env.client.workflow.start(migrationWorkflow, {
      workflowId: migrationWorkflowId(input.name),
      taskQueue: ts.taskQueue,
      args: [input],
      ...(options.suggestContinueAsNewAfter !== undefined && {
        memo: { [SUGGEST_CONTINUE_AS_NEW_AFTER]: options.suggestContinueAsNewAfter },
      }),
    });
    const migration = new MigrationUnderTest(ts, handle, input);
    started.push(migration);
    return migration;
  }

  status(): Promise<MigrationStatus> {
    return this.handle.query(migrationStatusQuery);
  }

  /** Polls the status until `ok`; fails with the last status after `timeoutMs` of real time. */
  async until(
    what: string,
    ok: (status: MigrationStatus) => boolean,
    timeoutMs = 20_000,
  ): Promise<MigrationStatus> {
    const deadline = Date.now() + timeoutMs;
    let pause = 2;
    for (;;) {
      const status = await this.status();
      if (ok(status)) return status;
      if (Date.now() > deadline) {
        throw new Error(
          `timed out waiting for ${what}; the migration is at ${status.step}, ${status.phase}${status.held ? `, held (${status.held.kind}): ${status.held.reason}` : ''}; last events: ${status.events
            .slice(-5)
            .map((event) => event.text)
            .join(' | ')}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, pause));
      pause = Math.min(20, pause * 2);
    }
  }

  /** Waits until the migration holds for `kind` (at `step`, when given). */
  heldFor(kind: MigrationHold['kind'], step?: string): Promise<MigrationStatus> {
    return this.until(
      `a ${kind} hold${step !== undefined ? ` at ${step}` : ''}`,
      (status) => status.held?.kind === kind && (step === undefined || status.step === step),
    );
  }

  /** Timers already let pass, by run and id. */
  private readonly passed = new Set<string>();

  /**
   * Waits until the workflow waits on a durable timer it has not waited on before (a soak), then
   * lets that timer's whole time pass; returns its duration.
   */
  async soakPasses(): Promise<number> {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const timer = (await this.openTimers()).find((open) => !this.passed.has(open.key));
      if (timer !== undefined) {
        this.passed.add(timer.key);
        await withinRealTime(
          this.ts.env.sleep(timer.ms),
          `a soak of ${timer.ms} ms did not pass within 30 s: time skipping is locked (a workflow task left under way?)`,
        );
        return timer.ms;
      }
      if (Date.now() > deadline) throw new Error('timed out waiting for the migration to wait on a timer');
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** The timers the workflow's current run waits on. */
  async openTimers(): Promise<Array<{ key: string; ms: number }>> {
    const history = await this.handle.fetchHistory();
    const run =
      String(history.events?.[0]?.eventTime?.nanos ?? '') +
      String(history.events?.[0]?.eventTime?.seconds ?? '');
    const open = new Map<string, number>();
    for (const event of history.events ?? []) {
      const startedTimer = event.timerStartedEventAttributes;
      if (startedTimer?.timerId) {
        const timeout = startedTimer.startToFireTimeout;
        open.set(
          startedTimer.timerId,
          Number(timeout?.seconds ?? 0) * 1000 + Math.ceil((timeout?.nanos ?? 0) / 1e6),
        );
      }
      const done = event.timerFiredEventAttributes?.timerId ?? event.timerCanceledEventAttributes?.timerId;
      if (done) open.delete(done);
    }
    return [...open].map(([id, ms]) => ({ key: `${run}/${id}`, ms }));
  }

  /**
   * Resolves once the workflow has handled everything sent to it before: an update it must refuse
   * (a rollback to no step) is answered only after the signals that came first.
   */
  async handledAll(): Promise<MigrationStatus> {
    await this.rollback('nowhere').catch(() => undefined);
    return this.status();
  }

  approve(by = 'tester') {
    return this.handle.executeUpdate(approveUpdate, { args: [{ by }] });
  }

  rollback(to: string, by = 'tester') {
    return this.handle.executeUpdate(rollbackUpdate, { args: [{ to, by }] });
  }

  abort(by = 'tester') {
    return this.handle.executeUpdate(abortUpdate, { args: [{ by }] });
  }

  pause() {
    return this.handle.signal(pauseSignal);
  }

  resume() {
    return this.handle.signal(resumeSignal);
  }

  rollbackOneStep() {
    return this.handle.signal(rollbackSignal);
  }

  /** What reconciliation tells its migration: the failures that hold it (none: they cleared). */
  syncTrouble(failing: SyncFailure[]) {
    return this.handle.signal(syncTroubleSignal, { failing });
  }

  /** What a backfill partition tells its migration when its copy fails for a cause only an operator mends. */
  backfillTrouble(table: string, message: string, code: string | null) {
    return this.handle.signal(backfillTroubleSignal, { workflowId: 'partition', table, message, code });
  }

  result(): Promise<MigrationStatus> {
    return this.handle.result();
  }
}

/**
 * Terminates the migration's backfills that still run. The test server does not end a child when
 * its parent closes, and a child that ends after its parent keeps time skipping locked for good
 * (its parent is never told); one terminated while its parent runs, or its activity waits, does not.
 */
async function endBackfills(migration: MigrationUnderTest): Promise<void> {
  for (const table of migration.input.tables) {
    const child = migration.handle.client.getHandle(
      `${migration.handle.workflowId}/backfill-${table.table.schema}.${table.table.table}`,
    );
    const running = await child.describe().then(
      ({ status }) => status.name === 'RUNNING',
      () => false,
    );
    if (running) await child.terminate('the test is over').catch(() => undefined);
  }
}

/**
 * Cancels a migration that still runs and waits for it to end. Not a termination: the test server
 * keeps time skipping locked while a workflow task is under way, and a task cut off by terminating
 * its workflow is never released, so every later soak of the file would pass in real time. A
 * migration that does not end on cancellation within ten seconds is terminated after all.
 */
async function endCleanly(handle: WorkflowStartHandle): Promise<boolean> {
  const { status } = await handle.describe();
  if (status.name !== 'RUNNING') return false;
  await handle.cancel().catch(() => undefined);
  const ended = await Promise.race([
    handle.result().then(
      () => true,
      () => true,
    ),
    new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 10_000).unref()),
  ]);
  if (!ended)
    await handle.terminate('the test is over and it did not end on cancellation').catch(() => undefined);
  return !ended;
}

/**
 * Ends every migration the test started that still runs, after saving the histories of all their
 * runs when WORKFLOW_TEST_HISTORIES names a folder (each test names its migration apart, so the
 * files do not collide). Call from afterEach. True when one had to be terminated: time skipping may
 * then stay locked for good (see endCleanly).
 */
export async function endMigrations(): Promise<boolean> {
  const folder = process.env.WORKFLOW_TEST_HISTORIES;
  let terminated = false;
  for (const migration of started.splice(0)) {
    const handle = migration.handle;
    await endBackfills(migration);
    if (await endCleanly(handle)) terminated = true;
    if (folder === undefined || folder === '') continue;
    mkdirSync(folder, { recursive: true });
    let runId: string | undefined = handle.firstExecutionRunId;
    for (let run = 1; runId !== undefined; run++) {
      const history = await handle.client.getHandle(handle.workflowId, runId).fetchHistory();
      writeFileSync(
        path.join(folder, historyFileName(handle.workflowId, run)),
        `${JSON.stringify(JSON.parse(historyToJSON(history)), null, 1)}\n`,
      );
      const last = history.events?.at(-1);
      runId = last?.workflowExecutionContinuedAsNewEventAttributes?.newExecutionRunId ?? undefined;
    }
  }
  return terminated;
}
