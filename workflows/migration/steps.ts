// The step runner: each step's own work and its gates, and entering the next step.
//   off ─ prepare: bind the servers, refuse what cannot be migrated (hazard 10), claim the tables on
//         both sides, TRUNCATE guards on both sides, capture on old, reconciliation
//   dual_write ─ backfill every table; complete the tables created on new; verify new equals old;
//         gates, without a soak
//   shadow ─ the query benchmark once; then, like every later step: soak, then gates
// Entering the first `live` step from `shadow` raises the write fence until every router's trailing
// mirrors landed (transitions.ts). A failed gate holds the migration with its reason, or in `live`
// steps back one read step first when so configured.
import { condition, ParentClosePolicy, patched, startChild, workflowInfo } from '@temporalio/workflow';
import type { GateReport, VerificationReport } from '../../model/messages';
import type { ThrottleSettings } from '../../model/throttle-settings';
import { newIsAuthoritative, stepLabel, type StagePosition } from '../../model/migration-plan';
import { mirrorsMayTrail } from '../../model/stages';
import { backfillTableWorkflow } from '../backfill';
import { pauseSignal, throttleSignal } from '../messages';
import { verificationWorkflow } from '../verification';
import {
  benchmarkQueries,
  completeTargetTables,
  ensureReconciliation,
  installChangeCapture,
  prepareTables,
  readGateFigures,
  reconciliationStatus,
} from './activities';
import { failedChecks, gateChecks } from './gates';
import type { MigrationState } from './state';
import { enterPastTrailingMirrors, setStage, switchWrites } from './transitions';
import { removeOwnObjects } from './way-back';

/**
 * A table's throttle with the operator's knobs (`migrate throttle`) over the config's; undefined when
 * the operator set none, so a child's input is then exactly the config's.
 */
function withOperatorKnobs(
  throttle: ThrottleSettings | undefined,
  status: MigrationState['status'],
): ThrottleSettings | undefined {
  const limit = status.maxRowsPerSecond;
  const { latencyRatio, niceRatio } = status.copyKnobs ?? {};
  if (limit === undefined && latencyRatio === undefined && niceRatio === undefined) return undefined;
  return {
    ...throttle,
    ...(limit !== undefined && { maxRowsPerSecond: limit }),
    ...(latencyRatio !== undefined && {
      latencyTarget: latencyRatio === null ? null : { ...throttle?.latencyTarget, ratio: latencyRatio },
    }),
    ...(niceRatio !== undefined && { niceRatio }),
  };
}

/** Waits up to `ms`, or less when the operator asks for something or trouble comes; true when the time ran out. */
export async function waitUnlessInterrupted(
  state: MigrationState,
  ms: number,
  alsoStop: () => boolean = () => false,
): Promise<boolean> {
  return !(await condition(() => state.interrupted() || state.troubled() || alsoStop(), ms));
}

async function prepare(state: MigrationState): Promise<void> {
  const { status, memory, input } = state;
  state.setPhase('preparing');
  const servers = await state.bound();
  // Every refusal (hazard 10) comes before anything is written to a migrated table on either side.
  const prepared = await prepareTables({
    migration: state.name,
    servers,
    tables: input.tables.map((table) => ({
      table: table.table,
      createIfMissing: table.createTargetTable ?? false,
      ...(table.hotRowsWhere !== undefined && { hotRowsWhere: table.hotRowsWhere }),
      // Only when set: the activity's input stays as it was for every run without one.
      ...(table.distributionColumn !== undefined && { distributionColumn: table.distributionColumn }),
    })),
  });
  prepared.tables.forEach((table, i) => (status.tables[i]!.estimatedRows = table.estimatedRows));
  memory.createdTables = prepared.created;
  status.warnings = prepared.warnings;
  for (const warning of prepared.warnings) state.note(`warning: ${warning}`);
  await installChangeCapture({ migration: state.name, servers, connection: 'old', tables: state.tables });
  await ensureReconciliation({
    workflowId: state.reconciliationId,
    migration: state.name,
    servers,
    from: 'old',
    to: 'new',
  });
  memory.prepared = true;
  state.note(
    `prepared on ${servers.old.label} → ${servers.new.label}: ${state.tables.length} tables checked and claimed${prepared.created.length > 0 ? ` (${prepared.created.length} created on new)` : ''}, TRUNCATE guarded on both sides, change capture on old, reconciliation running`,
  );
}

/** Backfills every table not done yet, one child workflow each; one run at a time. */
function backfill(state: MigrationState): Promise<void> {
  const { status, input } = state;
  state.backfilling ??= (async () => {
    await Promise.all(
      input.tables.map(async (table, i) => {
        const progress = status.tables[i]!;
        if (progress.backfillDone) return;
        const limit = status.maxRowsPerSecond;
        const throttle = withOperatorKnobs(table.throttle, status);
        const child = await startChild(backfillTableWorkflow, {
          workflowId: `${workflowInfo().workflowId}/backfill-${progress.table}`,
          parentClosePolicy: ParentClosePolicy.TERMINATE,
          // prepare() checked and claimed every table and put capture on it already.
          args: [
            {
              ...table,
              prepared: { servers: await state.bound(), estimatedRows: progress.estimatedRows },
              ...(throttle !== undefined && { throttle }),
            },
          ],
        });
        state.backfills.set(progress.table, child);
        if (status.paused || status.copyKnobs?.copyPaused === true)
          void child.signal(pauseSignal).catch(() => undefined);
        // A row limit set while the child was starting did not reach it: pass it on now.
        if (status.maxRowsPerSecond !== limit) {
          void child
            .signal(throttleSignal, { maxRowsPerSecond: status.maxRowsPerSecond ?? null })
            .catch(() => undefined);
        }
        const result = await child.result();
        state.backfills.delete(progress.table);
        progress.rowsCopied = result.rowsCopied;
        progress.backfillDone = true;
        state.note(
          `backfill of ${progress.table} done: ${result.rowsCopied} rows in ${result.chunksDone} chunks`,
        );
      }),
    );
  })().finally(() => (state.backfilling = undefined));
  return state.backfilling;
}

/** One verification round: every table at once, one child workflow each. */
async function verify(state: MigrationState): Promise<VerificationReport[]> {
  const { status, memory, settings } = state;
  state.setPhase('verifying');
  memory.verificationRounds += 1;
  status.verificationRound = memory.verificationRounds;
  const servers = await state.bound();
  const reports = await Promise.all(
    state.input.tables.map(async (table, i) => {
      // The copy's throttle (source health, row limit, nice ratio) with the operator's knobs over it.
      const throttle = withOperatorKnobs(table.throttle, status) ?? table.throttle ?? {};
      const child = await startChild(verificationWorkflow, {
        workflowId: `${workflowInfo().workflowId}/verify-${status.tables[i]!.table}-${memory.verificationRounds}`,
        parentClosePolicy: ParentClosePolicy.TERMINATE,
        args: [
          {
            migration: state.name,
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
            throttle,
          },
        ],
      });
      state.verifications.set(child.workflowId, child);
      try {
        return await child.result();
      } finally {
        state.verifications.delete(child.workflowId);
      }
    }),
  );
  reports.forEach((report, i) => (status.tables[i]!.verification = report));
  const sum = (figure: (report: VerificationReport) => number) =>
    reports.reduce((total, report) => total + figure(report), 0);
  const differences = sum((report) => report.differences);
  state.note(
    `verification round ${memory.verificationRounds}: ${sum((report) => report.rowsFrom)} rows compared, ${differences} differences (${sum((report) => report.repaired)} repaired), ${sum((report) => report.settled)} writes in flight settled, ${sum((report) => report.inFlight)} still in flight`,
  );
  return reports;
}

/** Reads the figures of the window since the baseline and checks them (gates.ts); the report is kept. */
async function checkGates(state: MigrationState, step: StagePosition, windowMs: number): Promise<GateReport> {
  const { status, memory } = state;
  state.setPhase('gating');
  const figures = await readGateFigures({
    servers: await state.bound(),
    connection: 'old',
    migration: state.name,
    ...(memory.baseline !== null && { baseline: memory.baseline }),
  });
  const reconciliation = await reconciliationStatus({ workflowId: state.reconciliationId });
  const checks = gateChecks({
    step,
    limits: state.settings.gates,
    figures,
    reconciliation,
    verifiedClean: status.verifiedClean,
    queryBenchmark: status.queryBenchmark,
  });
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
}

async function runOff(state: MigrationState): Promise<boolean> {
  if (!state.memory.prepared) {
    try {
      await prepare(state);
    } catch (err) {
      // A refusal leaves nothing behind: what preparing put on either side goes again.
      if (state.memory.servers !== null) await removeOwnObjects(state);
      throw err;
    }
  }
  return true;
}

async function runDualWrite(state: MigrationState, step: StagePosition): Promise<boolean> {
  const { status, memory } = state;
  if (status.tables.some((table) => !table.backfillDone)) {
    state.setPhase('backfilling');
    const done = backfill(state).then(() => true);
    // A rollback or trouble ends the wait; the backfill runs on (its failure is seen next time).
    done.catch(() => undefined);
    if (
      !(await Promise.race([
        done,
        condition(() => state.interrupted() || state.troubled()).then(() => false),
      ]))
    ) {
      return false;
    }
  }
  if (memory.createdTables.length > 0 && !memory.createdTablesCompleted) {
    state.setPhase('completing-tables');
    const completed = await completeTargetTables({
      migration: state.name,
      servers: await state.bound(),
      tables: memory.createdTables,
    });
    memory.createdTablesCompleted = true;
    state.note(
      `tables created on new completed after the backfill: ${completed.created.length > 0 ? completed.created.join(', ') : 'nothing was left to add'}`,
    );
  }
  // Writes in flight are told apart from damage (range-verifier.ts): any difference left is real.
  const reports = await verify(state);
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
    state.hold(
      'verification',
      `verification found ${differences} rows that differ between old and new with no write in flight to explain them: ${found.join('; ')}. Find out how they came apart (a write straight into new, a disabled trigger); resume verifies again, approve accepts them`,
    );
    return false;
  }
  const gates = await checkGates(state, step, 0);
  if (!gates.passed) {
    state.hold('gate', `${stepLabel(step)}: ${failedChecks(gates.checks)}`);
    return false;
  }
  return true;
}

/** shadow, live, switched, complete: the soak, then the gates. */
async function runSoakedStep(state: MigrationState, step: StagePosition): Promise<boolean> {
  const { status, memory, settings, steps } = state;
  const position = status.position;
  if (step.stage === 'shadow' && status.queryBenchmark === null) {
    const { queries, topStatements, runs } = settings.queryBenchmark;
    if (queries.length > 0 || topStatements > 0) {
      state.setPhase('benchmarking');
      status.queryBenchmark = await benchmarkQueries({
        servers: await state.bound(),
        queries,
        topStatements,
        runs,
      });
      state.note(
        `query benchmark: ${status.queryBenchmark.queries.map((q) => `${q.name} p50 ${q.ratioP50.toFixed(2)}×`).join(', ') || 'no query ran'}`,
      );
    }
  }
  if (memory.baseline === null) {
    memory.baseline = (
      await readGateFigures({ servers: await state.bound(), connection: 'old', migration: state.name })
    ).snapshot;
  }
  state.setPhase('gating');
  const started = Date.now();
  if (!(await waitUnlessInterrupted(state, settings.stepSoakMs, () => status.paused))) return false;
  const gates = await checkGates(state, step, Date.now() - started);
  if (gates.passed) {
    state.note(`${stepLabel(step)}: gates passed (${gates.routers} routers)`);
    return true;
  }
  const reasons = failedChecks(gates.checks);
  if (
    settings.onGateFailure === 'step-back' &&
    step.stage === 'live' &&
    steps[position - 1]!.stage === 'live'
  ) {
    await setStage(state, steps[position - 1]!);
    const from = stepLabel(step);
    state.arrive(position - 1);
    status.rollbacks.push({ from, to: status.step, at: Date.now(), by: 'gate' });
    state.hold('gate', `${from}: ${reasons}; stepped back to ${status.step}`);
  } else {
    state.hold('gate', `${stepLabel(step)}: ${reasons}`);
  }
  return false;
}

/** The current step's own work: true when it passed, false when it held (or was interrupted). */
export async function runStep(state: MigrationState): Promise<boolean> {
  const step = state.steps[state.status.position]!;
  if (step.stage === 'off') return runOff(state);
  if (step.stage === 'dual_write') return runDualWrite(state, step);
  return runSoakedStep(state, step);
}

/**
 * Runs started before entered `live` from `shadow` with one stage change: in `shadow` every write
 * waited for its mirror then, so none could still be landing.
 */
const FENCE_BEFORE_READS_ON_NEW = 'fence-before-reads-on-new';

/**
 * Enters the step at `position`: through the write switch when it is `switched`, past the fence that
 * lets trailing mirrors land when its reads go to new; false when that failed (the migration holds).
 */
export async function enter(state: MigrationState, position: number): Promise<boolean> {
  const { steps, status } = state;
  const step = steps[position]!;
  const current = steps[status.position]!;
  if (step.stage === 'switched' && !newIsAuthoritative(current)) {
    const result = await switchWrites(state, status.position, position);
    if (!result.switched) {
      state.hold(
        'switch-failed',
        `the write switch did not happen, everyone stays on old: ${result.reason}; resume or approve to try again`,
      );
      return false;
    }
  } else if (step.stage === 'live' && mirrorsMayTrail(current.stage) && patched(FENCE_BEFORE_READS_ON_NEW)) {
    const missing = await enterPastTrailingMirrors(state, status.position, position);
    if (missing.length > 0) {
      state.hold(
        'fence',
        `reads did not move to new, everyone stays at ${status.step}: routers did not acknowledge the write fence in time (their mirrors in flight must land first): ${missing.join(', ')}; resume or approve to try again`,
      );
      return false;
    }
  } else {
    await setStage(state, step);
  }
  state.arrive(position);
  state.note(`entered ${status.step}`);
  return true;
}
