// The migration: one long-running workflow per migration (id from its name, see ids.ts) that moves
// it through its steps and lets an operator steer it.
//
//   off ─ prepare: bind the servers, refuse what cannot be migrated (hazard 10), claim the tables on
//         both sides (one table, one migration), TRUNCATE guards on both sides, capture on old,
//         reconciliation
//   dual_write ─ routers write old then new; backfill every table; verify new equals old
//   shadow ─ a sample of reads also runs on new and is compared; the query benchmark runs
//   live p% ─ for each read step: p% of reads from new
//   switched ─ the write switch (write-switch.ts): new takes writes, old is reverse-synced
//   complete ─ writes on new only; old read-only and reverse-synced for the soak (a durable timer)
//   retire ─ on approval: capture, guards, flags and helper tables go; old's data stays
//
// Each step from shadow on runs for its soak window, then its gates are read (shadow mismatch rate,
// error rate and latency on new, reconciliation backlog, last verification clean, query ratio). A
// failed gate holds the migration with its reason (or steps back one read step first, when so
// configured); `approve` releases it, `resume` measures again. Steps listed in `approvals` wait for
// an operator before they are entered. `pause` stops the ramp (and the backfill) where it is; a
// rollback goes back any number of steps, from `switched` or `complete` through the write switch the
// other way, so no write made on new is lost (hazard 8); `abort` rolls back to `off` and removes
// capture and guards. The state travels through continue-as-new; long waits are timers.
// Work that fails for a cause retrying cannot heal (a schema change on either side, a worker on the
// wrong servers, a constraint the other side enforces), a reconciliation that cannot carry a table's
// changes, and a verification that finds differences no write in flight explains all hold the
// migration with the cause instead of failing it or going on; see MigrationHold.
import {
  ActivityFailure,
  ApplicationFailure,
  ChildWorkflowFailure,
  ParentClosePolicy,
  allHandlersFinished,
  condition,
  continueAsNew,
  isCancellation,
  log,
  proxyActivities,
  setCurrentDetails,
  ContinueAsNew,
  setHandler,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
  type ChildWorkflowHandle,
  getExternalWorkflowHandle,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { TableRef } from '../model/tables';
import type { ServerBinding } from '../model/servers';
import type { BenchmarkQuery } from '../model/query-benchmark';
import type { RouterStats } from '../model/gate-stats';
import { backfillTableWorkflow, type BackfillTableInput } from './backfill';
import { reconciliationWorkflowId } from '../model/ids';
import {
  abortUpdate,
  approveUpdate,
  backfillTroubleSignal,
  migrationStatusQuery,
  pauseSignal,
  resumeSignal,
  retrySyncSignal,
  rollbackSignal,
  rollbackUpdate,
  syncTroubleSignal,
} from './messages';
import type {
  GateCheck,
  GateReport,
  MigrationHold,
  MigrationPhase,
  MigrationStatus,
  RollbackResult,
  SyncFailure,
} from '../model/messages';
import {
  newIsAuthoritative,
  planSteps,
  rollbackTarget,
  stepLabel,
  type ApprovalPoint,
  type GateLimits,
  type StagePosition,
} from '../model/migration-plan';
import { MIGRATION_NAME, MIGRATION_PHASE } from './search-attributes';
import { verificationWorkflow } from './verification';
import { switchAuthority } from './write-switch';

export interface MigrationSettings {
  /** Percentages of reads served by new in `live`, rising, ending with 100. */
  readSteps: number[];
  /** How long each step from shadow on runs before its gates are read, in ms. */
  stepSoakMs: number;
  /** How long old stays read-only and reverse-synced after `complete`, in ms. */
  completionSoakMs: number;
  /** What a failed gate does in `live`: hold there, or step back one read step and hold. */
  onGateFailure: 'hold' | 'step-back';
  /** Stages entered only after an operator approves. Retiring always needs approval. */
  approvals: ApprovalPoint[];
  gates: GateLimits;
  /** How long routers get to acknowledge the write fence, in ms. */
  fenceTimeoutMs: number;
  verification: { chunkSize: number; partitions: number; settleMs: number; inFlightWaitMs?: number };
  queryBenchmark: { queries: BenchmarkQuery[]; topStatements: number; runs: number };
}

export interface MigrationInput {
  name: string;
  /** Each table's backfill, as built from the config (config/migration-input.ts). */
  tables: BackfillTableInput[];
  settings: MigrationSettings;
  /** Carried across continue-as-new. */
  resume?: MigrationMemory;
}

/** What the workflow remembers beyond the status it reports. */
interface MigrationMemory {
  status: MigrationStatus;
  prepared: boolean;
  /** The current step's own work and gates are done; the migration may go on. */
  stepPassed: boolean;
  /** The step an operator approved entering. */
  approvedStep: number | null;
  /** Router counters at the start of the current soak window. */
  baseline: Record<string, RouterStats> | null;
  verificationRounds: number;
  /** The servers the migration was prepared on (server-identity.ts); every activity checks them. */
  servers: ServerBinding | null;
  /** Tables the migration created on new, whose indexes and foreign keys come after the backfill. */
  createdTables: TableRef[];
  createdTablesCompleted: boolean;
  /** Reconciliation's failures the operator approved going on with (by table). */
  syncFailuresApproved: string[];
}

const MAX_EVENTS = 30;
/** Failures only an operator can mend: they hold as `failure`, and resume checks again. */
const OPERATOR_CAUSES = ['SchemaChanged', 'WrongServers', 'MigrationRefused'];

const { setMigrationStage, readGateFigures, ensureReconciliation, reconciliationStatus, bindServers } =
  proxyActivities<Activities>({
    startToCloseTimeout: '1 minute',
    heartbeatTimeout: '15 seconds',
    retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
  });
const {
  prepareTables,
  acceptSchemaChanges,
  installChangeCapture,
  removeChangeCapture,
  removeWriteGuard,
  removeTruncateGuard,
  removeMigrationHelpers,
} = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '15 seconds',
  // A refusal (hazard 10) is not retried: the activity marks it so.
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
});
const { completeTargetTables } = proxyActivities<Activities>({
  startToCloseTimeout: '24 hours',
  heartbeatTimeout: '15 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
});
const { benchmarkQueries } = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '15 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds', maximumAttempts: 3 },
});
const { stopReconciliation } = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: '15 seconds',
  retry: { initialInterval: '1 second', maximumInterval: '30 seconds' },
});

function tableName(input: BackfillTableInput): string {
  return `${input.table.schema}.${input.table.table}`;
}

function initialMemory(input: MigrationInput): MigrationMemory {
  const steps = planSteps(input.settings.readSteps);
  return {
    status: {
      name: input.name,
      phase: 'preparing',
      step: stepLabel(steps[0]!),
      stage: 'off',
      readPercent: 0,
      position: 0,
      steps: steps.map(stepLabel),
      paused: false,
      held: null,
      tables: input.tables.map((table) => ({
        table: tableName(table),
        estimatedRows: 0,
        rowsCopied: 0,
        backfillDone: false,
        verification: null,
      })),
      verifiedClean: null,
      lastGate: null,
      queryBenchmark: null,
      switches: [],
      rollbacks: [],
      soakUntil: null,
      events: [],
      warnings: [],
      syncFailures: [],
      error: null,
      runs: 0,
    },
    prepared: false,
    stepPassed: false,
    approvedStep: null,
    baseline: null,
    verificationRounds: 0,
    servers: null,
    createdTables: [],
    createdTablesCompleted: false,
    syncFailuresApproved: [],
  };
}

export async function migrationWorkflow(input: MigrationInput): Promise<MigrationStatus> {
  const { settings, name } = input;
  const steps = planSteps(settings.readSteps);
  const switchedAt = steps.findIndex((step) => step.stage === 'switched');
  const last = steps.length - 1;
  const memory = input.resume ?? initialMemory(input);
  const status = memory.status;
  status.runs += 1;
  const reconciliationId = reconciliationWorkflowId(name);
  const tables = input.tables.map((table) => table.table);

  // ---- Requests from the operator, answered by the main loop. ----
  let approvals = 0;
  let resumes = 0;
  let pendingRollback: { target: number; by: string; ticket: number } | null = null;
  let pendingAbort: { by: string; ticket: number } | null = null;
  let tickets = 0;
  const answers = new Map<number, { ok: true; value: RollbackResult } | { ok: false; reason: string }>();
  const backfills = new Map<string, ChildWorkflowHandle<typeof backfillTableWorkflow>>();

  const note = (text: string) => {
    status.events.push({ at: Date.now(), text });
    if (status.events.length > MAX_EVENTS) status.events.splice(0, status.events.length - MAX_EVENTS);
    log.info(text);
  };
  // The Web UI lists migrations by name and `phase:step`; upserted only when it changes.
  let shownPhase = '';
  const setPhase = (phase: MigrationPhase) => {
    status.phase = phase;
    if (shownPhase !== `${phase}:${status.step}`) {
      shownPhase = `${phase}:${status.step}`;
      upsertSearchAttributes([
        { key: MIGRATION_NAME, value: name },
        { key: MIGRATION_PHASE, value: shownPhase },
      ]);
    }
    setCurrentDetails(
      `${name}: ${status.step}, ${phase}${status.paused ? ' (paused)' : ''}${status.held ? ` — held: ${status.held.reason}` : ''}`,
    );
  };
  const interrupted = () => pendingRollback !== null || pendingAbort !== null;
  const closed = () => ['retiring', 'retired', 'aborting', 'aborted'].includes(status.phase);
  const tellBackfills = (signal: typeof pauseSignal | typeof resumeSignal) => {
    for (const child of backfills.values()) void child.signal(signal).catch(() => undefined);
  };
  /** The servers the migration is bound to: recorded when it first prepares (or aborts before that). */
  const bound = async (): Promise<ServerBinding> =>
    (memory.servers ??= await bindServers({ migration: name }));

  // ---- Trouble the migration's own workflows report: it holds with the cause. ----
  let backfillTrouble: { table: string; message: string; code: string | null } | null = null;
  /** Reconciliation failures that hold the migration (those the operator approved going on with aside). */
  const syncHolds = () =>
    status.syncFailures.filter((failure) => !memory.syncFailuresApproved.includes(failure.table));
  const troubled = () => backfillTrouble !== null || (status.held === null && syncHolds().length > 0);
  /** Asks reconciliation to try its failing tables now; it tells again what still fails. */
  const retrySync = () => {
    status.syncFailures = [];
    void getExternalWorkflowHandle(reconciliationId)
      .signal(retrySyncSignal)
      .catch(() => undefined);
  };
  setHandler(backfillTroubleSignal, (trouble) => {
    backfillTrouble ??= trouble;
  });
  setHandler(syncTroubleSignal, ({ failing }) => {
    status.syncFailures = failing;
    memory.syncFailuresApproved = memory.syncFailuresApproved.filter((table) =>
      failing.some((failure) => failure.table === table),
    );
  });

  setHandler(migrationStatusQuery, () => status);
  setHandler(pauseSignal, () => {
    if (status.paused) return;
    status.paused = true;
    note('paused by an operator');
    tellBackfills(pauseSignal);
  });
  setHandler(resumeSignal, () => {
    resumes += 1;
    if (status.held?.kind === 'sync') retrySync();
    if (status.paused) {
      status.paused = false;
      note('resumed by an operator');
      tellBackfills(resumeSignal);
    }
  });
  setHandler(rollbackSignal, () => {
    if (closed() || status.position === 0) {
      note(`rollback signal ignored: the migration is at ${status.step}, ${status.phase}`);
      return;
    }
    pendingRollback ??= { target: status.position - 1, by: 'operator (signal)', ticket: ++tickets };
  });
  setHandler(
    approveUpdate,
    ({ by }) => {
      const held = status.held!;
      approvals += 1;
      note(`approved by ${by ?? 'an operator'}: ${held.reason}`);
      return { released: held.reason };
    },
    {
      validator: (_request) => {
        if (status.held === null) {
          throw new Error(
            `nothing is waiting for approval: the migration is at ${status.step}, ${status.phase}${status.paused ? ' and paused' : ''}`,
          );
        }
      },
    },
  );
  setHandler(
    rollbackUpdate,
    async ({ to, by }) => {
      const ticket = ++tickets;
      pendingRollback = { target: rollbackTarget(to, steps, status.position), by: by ?? 'operator', ticket };
      await condition(() => answers.has(ticket));
      const answer = answers.get(ticket)!;
      answers.delete(ticket);
      if (!answer.ok) throw ApplicationFailure.create({ message: answer.reason, nonRetryable: true });
      return answer.value;
    },
    {
      validator: ({ to }: { to: string }) => {
        if (closed()) throw new Error(`the migration is ${status.phase}; it can no longer roll back`);
        if (pendingRollback !== null) throw new Error('a rollback is already under way');
        rollbackTarget(to, steps, status.position);
      },
    },
  );
  setHandler(
    abortUpdate,
    async ({ by }) => {
      const ticket = ++tickets;
      pendingAbort = { by: by ?? 'operator', ticket };
      await condition(() => answers.has(ticket));
      const answer = answers.get(ticket)!;
      answers.delete(ticket);
      if (!answer.ok) throw ApplicationFailure.create({ message: answer.reason, nonRetryable: true });
      return { abortedAt: answer.value.from };
    },
    {
      validator: (_request) => {
        if (closed()) throw new Error(`the migration is ${status.phase}; there is nothing to abort`);
      },
    },
  );

  // ---- Moving between steps. ----
  const setStage = async (step: StagePosition, fenced?: boolean) =>
    setMigrationStage({
      servers: await bound(),
      connection: 'old',
      migration: name,
      stage: step.stage,
      readPercent: step.readPercent,
      ...(fenced !== undefined && { fenced }),
    });
  const arrive = (position: number) => {
    const step = steps[position]!;
    status.position = position;
    status.step = stepLabel(step);
    status.stage = step.stage;
    status.readPercent = step.readPercent;
    memory.stepPassed = false;
    memory.baseline = null;
  };
  const hold = (kind: MigrationHold['kind'], reason: string, cause?: MigrationHold['cause']) => {
    status.held = { kind, reason, since: Date.now(), ...(cause !== undefined && { cause }) };
    note(`held: ${reason}`);
    setPhase('held');
  };
  /** Moves write authority; records the switch. */
  const switchWrites = async (from: number, to: number) => {
    const direction = to >= switchedAt ? 'to-new' : 'to-old';
    setPhase(direction === 'to-new' ? 'switching' : 'rolling-back');
    const result = await switchAuthority({
      migration: name,
      servers: await bound(),
      tables,
      from: { side: direction === 'to-new' ? 'old' : 'new', ...steps[from]! },
      to: { side: direction === 'to-new' ? 'new' : 'old', ...steps[to]! },
      reconciliationWorkflowId: reconciliationId,
      fenceTimeoutMs: settings.fenceTimeoutMs,
    });
    status.switches.push({ direction, at: Date.now(), ...result });
    note(
      result.switched
        ? `write authority moved ${direction === 'to-new' ? 'to new' : 'back to old'}: writes waited at most ${result.fencedMs} ms, ${result.changesDrained} changes drained`
        : `the write switch ${direction === 'to-new' ? 'to new' : 'back to old'} did not happen: ${result.reason}`,
    );
    return result;
  };

  const rollBack = async (request: { target: number; by: string; ticket: number }) => {
    const from = status.position;
    const target = request.target;
    const fromLabel = status.step;
    const toLabel = stepLabel(steps[target]!);
    if (target >= from) {
      answers.set(request.ticket, { ok: false, reason: `the migration is already at ${fromLabel}` });
      return;
    }
    setPhase('rolling-back');
    if (newIsAuthoritative(steps[from]!) && !newIsAuthoritative(steps[target]!)) {
      const result = await switchWrites(from, target);
      if (!result.switched) {
        answers.set(request.ticket, {
          ok: false,
          reason: `the rollback to ${toLabel} did not happen, authority stays on new: ${result.reason}`,
        });
        setPhase(status.held === null ? 'gating' : 'held');
        return;
      }
    } else {
      await setStage(steps[target]!);
    }
    arrive(target);
    if (target <= 1) status.verifiedClean = null;
    status.soakUntil = null;
    status.rollbacks.push({ from: fromLabel, to: toLabel, at: Date.now(), by: request.by });
    answers.set(request.ticket, { ok: true, value: { from: fromLabel, to: toLabel } });
    hold(
      'rollback',
      `rolled back from ${fromLabel} to ${toLabel} by ${request.by}; resume or approve to go forward again`,
    );
  };

  const abort = async (request: { by: string; ticket: number }) => {
    const from = status.step;
    setPhase('aborting');
    if (newIsAuthoritative(steps[status.position]!)) {
      const result = await switchWrites(status.position, 0);
      if (!result.switched) {
        answers.set(request.ticket, {
          ok: false,
          reason: `the abort did not happen, authority stays on new: ${result.reason}`,
        });
        setPhase(status.held === null ? 'gating' : 'held');
        return false;
      }
    }
    await setStage(steps[0]!);
    arrive(0);
    await stopReconciliation({ workflowId: reconciliationId });
    await removeOwnObjects();
    status.held = null;
    answers.set(request.ticket, { ok: true, value: { from, to: 'off' } });
    note(
      `aborted at ${from} by ${request.by}: everyone is on old; capture, guards and claims removed, new keeps its rows`,
    );
    setPhase('aborted');
    return true;
  };

  /**
   * Removes what the migration put on both sides (retire and abort): capture, guards, its claims and
   * its rows in the helper tables; the helper schema too when nothing else uses it. Only its own:
   * another migration's triggers, claims and changes are never touched. Returns what stayed.
   */
  const removeOwnObjects = async (): Promise<string[]> => {
    const scope = { migration: name, servers: await bound(), tables };
    for (const side of ['new', 'old'] as const) {
      await removeChangeCapture({ ...scope, connection: side, discardPending: true });
    }
    for (const side of ['old', 'new'] as const) {
      await removeWriteGuard({ ...scope, connection: side });
      await removeTruncateGuard({ ...scope, connection: side });
    }
    const kept: string[] = [];
    for (const side of ['new', 'old'] as const) {
      const removal = await removeMigrationHelpers({
        servers: scope.servers,
        connection: side,
        migration: name,
      });
      if (!removal.dropped) kept.push(`${side}'s helper schema stays (${removal.kept})`);
    }
    return kept;
  };

  /** Waits up to `ms`, or less when the operator asks for something or trouble comes; true when the time ran out. */
  const waitUnlessInterrupted = async (ms: number, alsoStop: () => boolean = () => false) =>
    !(await condition(() => interrupted() || troubled() || alsoStop(), ms));

  // ---- The work of each step. ----
  const prepare = async () => {
    setPhase('preparing');
    const servers = await bound();
    // Every refusal (hazard 10) comes before anything is written to a migrated table on either side.
    const prepared = await prepareTables({
      migration: name,
      servers,
      tables: input.tables.map((table) => ({
        table: table.table,
        createIfMissing: table.createTargetTable ?? false,
        ...(table.hotRowsWhere !== undefined && { hotRowsWhere: table.hotRowsWhere }),
      })),
    });
    prepared.tables.forEach((table, i) => (status.tables[i]!.estimatedRows = table.estimatedRows));
    memory.createdTables = prepared.created;
    status.warnings = prepared.warnings;
    for (const warning of prepared.warnings) note(`warning: ${warning}`);
    await installChangeCapture({ migration: name, servers, connection: 'old', tables });
    await ensureReconciliation({
      workflowId: reconciliationId,
      migration: name,
      servers,
      from: 'old',
      to: 'new',
    });
    memory.prepared = true;
    note(
      `prepared on ${servers.old.label} → ${servers.new.label}: ${tables.length} tables checked and claimed${prepared.created.length > 0 ? ` (${prepared.created.length} created on new)` : ''}, TRUNCATE guarded on both sides, change capture on old, reconciliation running`,
    );
  };

  // The backfill runs on when a rollback interrupts the wait for it; going forward waits again.
  let backfilling: Promise<void> | undefined;
  const backfill = () => {
    backfilling ??= (async () => {
      await Promise.all(
        input.tables.map(async (table, i) => {
          const progress = status.tables[i]!;
          if (progress.backfillDone) return;
          const child = await startChild(backfillTableWorkflow, {
            workflowId: `${workflowInfo().workflowId}/backfill-${progress.table}`,
            parentClosePolicy: ParentClosePolicy.TERMINATE,
            // prepare() checked and claimed every table and put capture on it already.
            args: [{ ...table, prepared: { servers: await bound(), estimatedRows: progress.estimatedRows } }],
          });
          backfills.set(progress.table, child);
          if (status.paused) void child.signal(pauseSignal).catch(() => undefined);
          const result = await child.result();
          backfills.delete(progress.table);
          progress.rowsCopied = result.rowsCopied;
          progress.backfillDone = true;
          note(
            `backfill of ${progress.table} done: ${result.rowsCopied} rows in ${result.chunksDone} chunks`,
          );
        }),
      );
    })().finally(() => (backfilling = undefined));
    return backfilling;
  };

  const verify = async () => {
    setPhase('verifying');
    memory.verificationRounds += 1;
    const servers = await bound();
    const reports = await Promise.all(
      input.tables.map(async (table, i) => {
        const child = await startChild(verificationWorkflow, {
          workflowId: `${workflowInfo().workflowId}/verify-${status.tables[i]!.table}-${memory.verificationRounds}`,
          parentClosePolicy: ParentClosePolicy.TERMINATE,
          args: [
            {
              migration: name,
              servers,
              table: table.table,
              from: 'old',
              to: 'new',
              chunkSize: settings.verification.chunkSize,
              partitions: settings.verification.partitions,
              settleMs: settings.verification.settleMs,
              ...(settings.verification.inFlightWaitMs !== undefined && {
                inFlightWaitMs: settings.verification.inFlightWaitMs,
              }),
            },
          ],
        });
        return child.result();
      }),
    );
    reports.forEach((report, i) => (status.tables[i]!.verification = report));
    const sum = (figure: (report: (typeof reports)[number]) => number) =>
      reports.reduce((total, report) => total + figure(report), 0);
    const differences = sum((report) => report.differences);
    note(
      `verification round ${memory.verificationRounds}: ${sum((report) => report.rowsFrom)} rows compared, ${differences} differences (${sum((report) => report.repaired)} repaired), ${sum((report) => report.settled)} writes in flight settled, ${sum((report) => report.inFlight)} still in flight`,
    );
    return reports;
  };

  const checkGates = async (step: StagePosition, windowMs: number): Promise<GateReport> => {
    setPhase('gating');
    const limits = settings.gates;
    const figures = await readGateFigures({
      servers: await bound(),
      connection: 'old',
      migration: name,
      ...(memory.baseline !== null && { baseline: memory.baseline }),
    });
    const reconciliation = await reconciliationStatus({ workflowId: reconciliationId });
    const checks: GateCheck[] = [];
    const check = (
      checkName: string,
      value: number | null,
      limit: number | null,
      ok: boolean,
      detail: string,
    ) => checks.push({ name: checkName, value, limit, ok, detail });
    /** A figure that must not exceed its limit; nothing measured passes. */
    const atMost = (checkName: string, value: number | null, limit: number, detail: string) =>
      check(checkName, value, limit, value === null || value <= limit, detail);
    // Only `shadow` compares reads; in `live` new answers its share itself, measured below.
    if (step.stage === 'shadow') {
      const compared = figures.totals.shadowCompared;
      const rate = figures.shadowMismatchRate;
      if (compared < limits.minShadowComparisons) {
        check(
          'shadow comparisons',
          compared,
          limits.minShadowComparisons,
          false,
          `only ${compared} shadow reads were compared; the gate needs ${limits.minShadowComparisons}`,
        );
      } else {
        atMost(
          'shadow mismatch rate',
          rate,
          limits.maxShadowMismatchRate,
          `${figures.totals.shadowMismatched} of ${compared} shadow reads differed`,
        );
      }
    }
    if (step.stage === 'live' || step.stage === 'switched') {
      atMost(
        'error rate on new',
        figures.newErrorRate,
        limits.maxNewErrorRate,
        `${figures.totals.readsNewFailed} of ${figures.totals.readsNew} reads on new failed`,
      );
    }
    if (step.stage === 'live') {
      const ratio = figures.readLatencyRatio;
      atMost(
        'read latency new/old',
        ratio,
        limits.maxLatencyRatio,
        ratio === null
          ? 'not measured: reads ran on one side only'
          : `mean read time on new is ${ratio.toFixed(2)}× old's`,
      );
    }
    const backlog = reconciliation?.backlog ?? null;
    check(
      'reconciliation backlog',
      backlog,
      limits.maxReconciliationBacklog,
      backlog !== null && backlog <= limits.maxReconciliationBacklog,
      reconciliation === null
        ? 'reconciliation is not running'
        : `${reconciliation.changeLogBacklog} changes and ${reconciliation.queuedDiscrepancyKeys} discrepancy keys waiting, lag ${reconciliation.lagSeconds.toFixed(1)} s`,
    );
    const failing = reconciliation?.failing ?? [];
    check(
      'reconciliation failures',
      failing.length,
      0,
      failing.length === 0,
      failing.length === 0
        ? 'every table syncs'
        : failing
            .map((failure) => `${failure.table}: ${failure.message} (${failure.attempts} tries)`)
            .join('; '),
    );
    check(
      'last verification clean',
      status.verifiedClean === null ? null : status.verifiedClean ? 0 : 1,
      0,
      status.verifiedClean === true,
      status.verifiedClean === true
        ? 'the latest verification found nothing left to repair'
        : 'no clean verification since dual_write',
    );
    if (limits.maxQueryRatio !== null && status.queryBenchmark !== null) {
      const worst = status.queryBenchmark.queries.reduce<{ name: string; ratio: number } | null>(
        (found, query) =>
          found === null || query.ratioP50 > found.ratio
            ? { name: query.name, ratio: query.ratioP50 }
            : found,
        null,
      );
      atMost(
        'query p50 ratio new/old',
        worst?.ratio ?? null,
        limits.maxQueryRatio,
        worst === null
          ? 'no query was benchmarked'
          : `slowest on new: ${worst.name} at ${worst.ratio.toFixed(2)}×`,
      );
    }
    memory.baseline = figures.snapshot;
    const report: GateReport = {
      step: stepLabel(step),
      at: Date.now(),
      windowMs,
      routers: figures.routers,
      passed: checks.every((c) => c.ok),
      checks,
    };
    status.lastGate = report;
    return report;
  };

  /** The current step's own work: true when it passed, false when it held (or was interrupted). */
  const runStep = async (): Promise<boolean> => {
    const position = status.position;
    const step = steps[position]!;
    if (step.stage === 'off') {
      if (!memory.prepared) {
        try {
          await prepare();
        } catch (err) {
          // A refusal leaves nothing behind: what preparing put on either side goes again.
          if (memory.servers !== null) await removeOwnObjects();
          throw err;
        }
      }
      return true;
    }
    if (step.stage === 'dual_write') {
      if (status.tables.some((table) => !table.backfillDone)) {
        setPhase('backfilling');
        const done = backfill().then(() => true);
        // A rollback or trouble ends the wait; the backfill runs on (its failure is seen next time).
        done.catch(() => undefined);
        if (!(await Promise.race([done, condition(() => interrupted() || troubled()).then(() => false)]))) {
          return false;
        }
      }
      if (memory.createdTables.length > 0 && !memory.createdTablesCompleted) {
        setPhase('completing-tables');
        const completed = await completeTargetTables({
          migration: name,
          servers: await bound(),
          tables: memory.createdTables,
        });
        memory.createdTablesCompleted = true;
        note(
          `tables created on new completed after the backfill: ${completed.created.length > 0 ? completed.created.join(', ') : 'nothing was left to add'}`,
        );
      }
      // Writes in flight are told apart from damage (range-verifier.ts): any difference left is real.
      const reports = await verify();
      const differences = reports.reduce((sum, report) => sum + report.differences, 0);
      status.verifiedClean = differences === 0;
      if (!status.verifiedClean) {
        const found = reports
          .filter((report) => report.differences > 0)
          .map(
            (report) =>
              `${report.table}: ${report.differences} (${report.repaired} repaired; keys ${report.sampleKeys
                .slice(0, 3)
                .map((key) => `(${key.join(', ')})`)
                .join(', ')})`,
          );
        hold(
          'verification',
          `verification found ${differences} rows that differ between old and new with no write in flight to explain them: ${found.join('; ')}. Find out how they came apart (a write straight into new, a disabled trigger); resume verifies again, approve accepts them`,
        );
        return false;
      }
      const gates = await checkGates(step, 0);
      if (!gates.passed) {
        hold(
          'gate',
          `${stepLabel(step)}: ${gates.checks
            .filter((c) => !c.ok)
            .map((c) => `${c.name}: ${c.detail}`)
            .join('; ')}`,
        );
        return false;
      }
      return true;
    }
    if (step.stage === 'shadow' && status.queryBenchmark === null) {
      const { queries, topStatements, runs } = settings.queryBenchmark;
      if (queries.length > 0 || topStatements > 0) {
        setPhase('benchmarking');
        status.queryBenchmark = await benchmarkQueries({
          servers: await bound(),
          queries,
          topStatements,
          runs,
        });
        note(
          `query benchmark: ${status.queryBenchmark.queries.map((q) => `${q.name} p50 ${q.ratioP50.toFixed(2)}×`).join(', ') || 'no query ran'}`,
        );
      }
    }
    // Soak, then gates.
    if (memory.baseline === null) {
      memory.baseline = (
        await readGateFigures({ servers: await bound(), connection: 'old', migration: name })
      ).snapshot;
    }
    setPhase('gating');
    const started = Date.now();
    if (!(await waitUnlessInterrupted(settings.stepSoakMs, () => status.paused))) return false;
    const gates = await checkGates(step, Date.now() - started);
    if (gates.passed) {
      note(`${stepLabel(step)}: gates passed (${gates.routers} routers)`);
      return true;
    }
    const reasons = gates.checks
      .filter((c) => !c.ok)
      .map((c) => `${c.name}: ${c.detail}`)
      .join('; ');
    if (
      settings.onGateFailure === 'step-back' &&
      step.stage === 'live' &&
      steps[position - 1]!.stage === 'live'
    ) {
      await setStage(steps[position - 1]!);
      const from = stepLabel(step);
      arrive(position - 1);
      status.rollbacks.push({ from, to: status.step, at: Date.now(), by: 'gate' });
      hold('gate', `${from}: ${reasons}; stepped back to ${status.step}`);
    } else {
      hold('gate', `${stepLabel(step)}: ${reasons}`);
    }
    return false;
  };

  const enter = async (position: number): Promise<boolean> => {
    const step = steps[position]!;
    if (step.stage === 'switched' && !newIsAuthoritative(steps[status.position]!)) {
      const result = await switchWrites(status.position, position);
      if (!result.switched) {
        hold(
          'switch-failed',
          `the write switch did not happen, everyone stays on old: ${result.reason}; resume or approve to try again`,
        );
        return false;
      }
    } else {
      await setStage(step);
    }
    arrive(position);
    note(`entered ${status.step}`);
    return true;
  };

  const retire = async () => {
    setPhase('retiring');
    await stopReconciliation({ workflowId: reconciliationId });
    // Old is being let go: what reverse sync had not carried yet stays behind with the change log.
    const kept = await removeOwnObjects();
    note(
      `retired: capture, guards, claims and flags removed${kept.length > 0 ? `; ${kept.join('; ')}` : ', helper tables dropped'}; old's data is untouched`,
    );
    setPhase('retired');
  };

  /** After an operator released a `failure` hold: check the schema again when it changed, then retry. */
  const recover = async (held: MigrationHold) => {
    if (held.cause?.code === 'SchemaChanged') {
      setPhase('preparing');
      let accepted: { summary: string };
      try {
        accepted = await acceptSchemaChanges({
          migration: name,
          servers: await bound(),
          tables,
          completeLater: memory.createdTablesCompleted ? [] : memory.createdTables,
        });
      } catch (err) {
        if (isCancellation(err)) throw err;
        // Still a schema change to finish: the next resume checks again.
        hold('failure', failureCause(err).message, held.cause);
        return;
      }
      note(`schema checked again after the change: ${accepted.summary}`);
      // The same stage again, as a new version: every router reads the tables' shapes anew.
      await setStage(steps[status.position]!);
    }
    // Every partition held for a failure tries again; one that fails again says so anew.
    backfillTrouble = null;
    tellBackfills(resumeSignal);
    retrySync();
  };

  /** One turn of the main loop; true when the migration has ended. */
  const turn = async (): Promise<boolean> => {
    if (pendingAbort !== null) {
      const request = pendingAbort;
      pendingAbort = null;
      return answering(request.ticket, () => abort(request));
    }
    if (pendingRollback !== null) {
      const request = pendingRollback;
      pendingRollback = null;
      await answering(request.ticket, () => rollBack(request));
      return false;
    }
    if (status.paused) {
      setPhase('paused');
      await condition(() => !status.paused || interrupted());
      return false;
    }
    if (status.held === null && backfillTrouble !== null) {
      const trouble = backfillTrouble;
      backfillTrouble = null;
      hold('failure', `the backfill of ${trouble.table} cannot go on: ${trouble.message}`, {
        code: trouble.code,
        table: trouble.table,
      });
      return false;
    }
    if (status.held === null && syncHolds().length > 0) {
      const failing: SyncFailure[] = syncHolds();
      const what = `reconciliation cannot carry changes over: ${failing.map((f) => `${f.table} (${f.attempts} tries since ${new Date(f.since).toISOString()}): ${f.message}`).join('; ')}`;
      // A schema change or the wrong servers needs the operator, as when the backfill meets it.
      const needsOperator = failing.find((f) => OPERATOR_CAUSES.includes(f.code ?? ''));
      if (needsOperator !== undefined) {
        hold('failure', `${what}. Mend it, then resume`, {
          code: needsOperator.code,
          table: needsOperator.table,
        });
      } else {
        hold(
          'sync',
          `${what}. It keeps trying and this hold ends by itself once it can; resume asks it to try now, approve goes on regardless`,
          { code: failing[0]!.code, table: failing[0]!.table },
        );
      }
      return false;
    }
    if (status.held !== null) {
      const held = status.held;
      const seenApprovals = approvals;
      const seenResumes = resumes;
      // A hold that the next turn puts back by itself (an approval point, retiring) gives way to trouble,
      // so the reason shown is the one that matters now.
      const givesWay = () =>
        (held.kind === 'approval' || held.kind === 'retire') &&
        (backfillTrouble !== null || syncHolds().length > 0);
      await condition(
        () =>
          interrupted() ||
          givesWay() ||
          approvals > seenApprovals ||
          (held.kind === 'sync' && syncHolds().length === 0) ||
          (!['approval', 'retire', 'sync'].includes(held.kind) && resumes > seenResumes),
      );
      if (interrupted()) return false;
      status.held = null;
      if (givesWay() && approvals === seenApprovals) return false;
      if (approvals > seenApprovals) {
        if (held.kind === 'gate' || held.kind === 'verification') memory.stepPassed = true;
        if (held.kind === 'approval') memory.approvedStep = status.position + 1;
        if (held.kind === 'sync') memory.syncFailuresApproved = status.syncFailures.map((f) => f.table);
        if (held.kind === 'retire') {
          await retire();
          return true;
        }
      } else {
        memory.baseline = null;
      }
      if (held.kind === 'sync' && approvals === seenApprovals) note('reconciliation recovered');
      if (held.kind === 'failure') await recover(held);
      return false;
    }
    // Between steps, with no child running here: the next run carries the whole state.
    if (backfilling === undefined && workflowInfo().continueAsNewSuggested) {
      await condition(allHandlersFinished);
      await continueAsNew<typeof migrationWorkflow>({ ...input, resume: memory });
    }
    if (!memory.stepPassed) {
      memory.stepPassed = await runStep();
      return false;
    }
    if (status.position === last) {
      // complete: the soak, then retiring waits for an operator.
      status.soakUntil ??= Date.now() + settings.completionSoakMs;
      setPhase('soaking');
      const left = status.soakUntil - Date.now();
      if (left > 0 && !(await waitUnlessInterrupted(left))) return false;
      hold(
        'retire',
        'the soak is over: approve to retire (removes capture, guards, claims, flags and helper tables; old keeps its data)',
      );
      return false;
    }
    const next = status.position + 1;
    const point = steps[next]!.stage as ApprovalPoint;
    if (settings.approvals.includes(point) && memory.approvedStep !== next) {
      hold('approval', `entering ${stepLabel(steps[next]!)} needs an operator's approval`);
      return false;
    }
    if (await enter(next)) memory.approvedStep = null;
    return false;
  };

  /** Runs a rollback or abort; if it fails, the waiting update gets the reason before the hold. */
  async function answering<T>(ticket: number, work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (!answers.has(ticket)) answers.set(ticket, { ok: false, reason: failureCause(err).message });
      throw err;
    }
  }

  // ---- The main loop: work that fails for a cause retrying cannot heal holds with the cause. ----
  setPhase(status.phase);
  for (;;) {
    try {
      if (await turn()) return status;
    } catch (err) {
      if (isCancellation(err) || err instanceof ContinueAsNew) throw err;
      const cause = failureCause(err);
      if (!memory.prepared) {
        // Refused while preparing (hazard 10): nothing was written, the migration ends with the reason.
        status.error = cause.message;
        note(`refused: ${cause.message}`);
        throw err;
      }
      hold('failure', `${status.step}: ${cause.message}`, { code: cause.code, table: cause.table });
    }
  }
}

/**
 * What a failure comes down to: the innermost application failure's words, type and table (a child
 * workflow's activity's refusal, say), or the error's own message.
 */
function failureCause(err: unknown): { message: string; code: string | null; table: string | null } {
  let current: unknown = err;
  while (
    (current instanceof ChildWorkflowFailure || current instanceof ActivityFailure) &&
    current.cause !== undefined
  ) {
    current = current.cause;
  }
  if (current instanceof ApplicationFailure) {
    const details = current.details?.[0] as { table?: string } | undefined;
    return { message: current.message, code: current.type ?? null, table: details?.table ?? null };
  }
  return { message: current instanceof Error ? current.message : String(current), code: null, table: null };
}
