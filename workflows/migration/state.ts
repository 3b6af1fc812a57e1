// The migration workflow's state, in one object the request handlers, the step runner and the main
// loop share (the shape of samples-typescript's safe-message-handlers): what it reports (status),
// what it carries across continue-as-new (memory), the operator's requests waiting for the main loop,
// and the trouble its own workflows reported. Handlers only record; the main loop acts.
import {
  getExternalWorkflowHandle,
  log,
  patched,
  setCurrentDetails,
  upsertSearchAttributes,
  type ChildWorkflowHandle,
} from '@temporalio/workflow';
import type { BenchmarkQuery } from '../../model/query-benchmark';
import type { RouterStats } from '../../model/gate-stats';
import type { ServerBinding } from '../../model/servers';
import type { TableRef } from '../../model/tables';
import type {
  BackfillReport,
  MigrationHold,
  MigrationPhase,
  MigrationStatus,
  RollbackResult,
  SyncFailure,
} from '../../model/messages';
import { reconciliationWorkflowId } from '../../model/ids';
import {
  planSteps,
  stepLabel,
  type ApprovalPoint,
  type GateLimits,
  type StagePosition,
} from '../../model/migration-plan';
import type { backfillTableWorkflow, BackfillTableInput } from '../backfill';
import type { verificationWorkflow } from '../verification';
import { retrySyncSignal, throttleSignal, tuneSignal, type pauseSignal, resumeSignal } from '../messages';
import type { TuneRequest } from '../../model/messages';
import { MIGRATION_NAME, MIGRATION_PHASE, MIGRATION_STAGE, MIGRATION_STEP } from '../search-attributes';
import { bindServers } from './activities';

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
export interface MigrationMemory {
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

/** A rollback or an abort an operator asked for, waiting for the main loop; `ticket` keys its answer. */
export interface RollbackRequest {
  target: number;
  by: string;
  ticket: number;
}
export interface AbortRequest {
  by: string;
  ticket: number;
}
export type RequestAnswer = { ok: true; value: RollbackResult } | { ok: false; reason: string };

/** A backfill partition that cannot go on for a cause only an operator can mend. */
export interface BackfillTrouble {
  table: string;
  message: string;
  code: string | null;
}

const MAX_EVENTS = 30;

export function tableName(input: BackfillTableInput): string {
  return `${input.table.schema}.${input.table.table}`;
}

/** What a migration starts from (the first run; later runs are given what the one before carried). */
export function initialMemory(input: MigrationInput): MigrationMemory {
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
      liveFences: [],
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

export class MigrationState {
  readonly name: string;
  readonly settings: MigrationSettings;
  readonly steps: StagePosition[];
  /** The position of `switched`: from there on new holds write authority. */
  readonly switchedAt: number;
  readonly last: number;
  readonly memory: MigrationMemory;
  readonly status: MigrationStatus;
  readonly reconciliationId: string;
  readonly tables: TableRef[];

  // ---- The operator's requests, answered by the main loop. ----
  approvals = 0;
  resumes = 0;
  pendingRollback: RollbackRequest | null = null;
  pendingAbort: AbortRequest | null = null;
  private tickets = 0;
  readonly answers = new Map<number, RequestAnswer>();

  // ---- The migration's own workflows. ----
  readonly backfills = new Map<string, ChildWorkflowHandle<typeof backfillTableWorkflow>>();
  /** Verifications running now, by workflow id: the operator's row limit and nice ratio reach them too. */
  readonly verifications = new Map<string, ChildWorkflowHandle<typeof verificationWorkflow>>();
  /** The backfill runs on when a rollback interrupts the wait for it; going forward waits again. */
  backfilling: Promise<void> | undefined;
  backfillTrouble: BackfillTrouble | null = null;

  private shownPhase = '';
  /** What each table's backfill reported while copying (backfillCopiedSignal), by table. */
  private readonly copying = new Map<string, BackfillReport>();

  constructor(readonly input: MigrationInput) {
    this.name = input.name;
    this.settings = input.settings;
    this.steps = planSteps(input.settings.readSteps);
    this.switchedAt = this.steps.findIndex((step) => step.stage === 'switched');
    this.last = this.steps.length - 1;
    this.memory = input.resume ?? initialMemory(input);
    this.status = this.memory.status;
    this.status.runs += 1;
    this.reconciliationId = reconciliationWorkflowId(input.name);
    this.tables = input.tables.map((table) => table.table);
  }

  nextTicket(): number {
    return ++this.tickets;
  }

  note(text: string): void {
    const events = this.status.events;
    events.push({ at: Date.now(), text });
    if (events.length > MAX_EVENTS) events.splice(0, events.length - MAX_EVENTS);
    log.info(text);
  }

  /** The Web UI lists migrations by name, `phase:step`, stage and step; upserted only when they change. */
  setPhase(phase: MigrationPhase): void {
    const status = this.status;
    status.phase = phase;
    if (this.shownPhase !== `${phase}:${status.step}`) {
      this.shownPhase = `${phase}:${status.step}`;
      upsertSearchAttributes([
        { key: MIGRATION_NAME, value: this.name },
        { key: MIGRATION_PHASE, value: this.shownPhase },
      ]);
      // Stage and step apart, so the Web UI can filter "every migration at step X".
      if (patched('stage-and-step-search-attributes')) {
        upsertSearchAttributes([
          { key: MIGRATION_STAGE, value: status.stage },
          { key: MIGRATION_STEP, value: status.step },
        ]);
      }
    }
    this.showDetails();
  }

  /**
   * The Web UI's current details: step and phase, the hold's reason, and while backfilling the rows
   * copied of the estimate, rows/s and ETA of the tables still copying. Not a command: replay-safe.
   */
  private showDetails(): void {
    const status = this.status;
    const phase = status.phase;
    setCurrentDetails(
      `${this.name}: ${status.step}, ${phase}${status.paused && phase !== 'paused' ? ' (paused)' : ''}${status.held ? ` — held: ${status.held.reason}` : ''}${phase === 'backfilling' ? this.backfillFigures() : ''}`,
    );
  }

  /** ` — 6250 of ~30000 rows (20%), 980 rows/s, ETA 24 s` over the tables still copying; '' before a report. */
  private backfillFigures(): string {
    const copying = this.status.tables.flatMap((table) => {
      const report = table.backfillDone ? undefined : this.copying.get(table.table);
      return report === undefined ? [] : [report];
    });
    if (copying.length === 0) return '';
    const sum = (figure: (report: BackfillReport) => number) =>
      copying.reduce((total, report) => total + figure(report), 0);
    const rows = sum((report) => report.rowsCopied);
    const estimated = sum((report) => report.estimatedRows);
    const rate = sum((report) => report.rowsPerSecond);
    const left = sum((report) => Math.max(0, report.estimatedRows - report.rowsCopied));
    const percent = estimated > 0 ? ` (${Math.min(100, Math.round((rows / estimated) * 100))}%)` : '';
    const waiting = [...new Set(copying.flatMap((report) => report.waitingFor))];
    return ` — ${copying.length === 1 ? `${copying[0]!.table}: ` : `${copying.length} tables copying: `}${rows} of ~${estimated} rows${percent}, ${Math.round(rate)} rows/s, ETA ${rate > 0 ? `${Math.round(left / rate)} s` : 'unknown'}${waiting.length > 0 ? `; throttled: ${waiting.join('; ')}` : ''}`;
  }

  /** A table's backfill reported how far it got: shown while the migration backfills. */
  backfillReported(report: BackfillReport): void {
    if (!this.status.tables.some((table) => table.table === report.table)) return;
    this.copying.set(report.table, report);
    if (this.status.phase === 'backfilling') this.showDetails();
  }

  hold(kind: MigrationHold['kind'], reason: string, cause?: MigrationHold['cause']): void {
    this.status.held = { kind, reason, since: Date.now(), ...(cause !== undefined && { cause }) };
    this.note(`held: ${reason}`);
    this.setPhase('held');
  }

  /** Records arriving at `position`: its own work and gates are still to do. */
  arrive(position: number): void {
    const step = this.steps[position]!;
    const status = this.status;
    status.position = position;
    status.step = stepLabel(step);
    status.stage = step.stage;
    status.readPercent = step.readPercent;
    this.memory.stepPassed = false;
    this.memory.baseline = null;
  }

  /** An operator asked for a rollback or an abort. */
  interrupted(): boolean {
    return this.pendingRollback !== null || this.pendingAbort !== null;
  }

  closed(): boolean {
    return ['retiring', 'retired', 'aborting', 'aborted'].includes(this.status.phase);
  }

  /** Reconciliation failures that hold the migration (those the operator approved going on with aside). */
  syncHolds(): SyncFailure[] {
    return this.status.syncFailures.filter(
      (failure) => !this.memory.syncFailuresApproved.includes(failure.table),
    );
  }

  /** Trouble the migration's own workflows reported that has not held it yet. */
  troubled(): boolean {
    return this.backfillTrouble !== null || (this.status.held === null && this.syncHolds().length > 0);
  }

  tellBackfills(signal: typeof pauseSignal | typeof resumeSignal): void {
    // Copying an operator paused on its own stays paused until they resume copying.
    if (signal === resumeSignal && this.status.copyKnobs?.copyPaused === true) return;
    for (const child of this.backfills.values()) void child.signal(signal).catch(() => undefined);
  }

  /** Passes the latency target and nice ratio on to every running backfill and verification; how many backfills were told. */
  tuneBackfills(tune: TuneRequest): number {
    return this.tellCopies((child) => child.signal(tuneSignal, tune));
  }

  /** Sets the row limit of every running backfill (each shares it among its partitions) and verification; how many backfills were told. */
  throttleBackfills(maxRowsPerSecond: number | null): number {
    return this.tellCopies((child) => child.signal(throttleSignal, { maxRowsPerSecond }));
  }

  /** Signals every running backfill and verification (one that just ended misses it: nothing lost); how many backfills. */
  private tellCopies(
    send: (
      child: ChildWorkflowHandle<typeof backfillTableWorkflow | typeof verificationWorkflow>,
    ) => Promise<void>,
  ): number {
    for (const child of [...this.backfills.values(), ...this.verifications.values()])
      void send(child).catch(() => undefined);
    return this.backfills.size;
  }

  /** Asks reconciliation to try its failing tables now; it tells again what still fails. */
  retrySync(): void {
    this.status.syncFailures = [];
    void getExternalWorkflowHandle(this.reconciliationId)
      .signal(retrySyncSignal)
      .catch(() => undefined);
  }

  /** The servers the migration is bound to: recorded when it first prepares (or aborts before that). */
  async bound(): Promise<ServerBinding> {
    return (this.memory.servers ??= await bindServers({ migration: this.name }));
  }
}
