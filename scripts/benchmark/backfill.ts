// This project's backfill, driven exactly as `npm run demo` does it: an in-process worker and one
// backfillTableWorkflow execution. Also reads back, from Temporal's visibility store, how large the
// histories of the migration's workflow executions grew.
import type { Client, WorkflowExecutionInfo } from '@temporalio/client';
import type { TableRef } from '../../model/tables';
import type { MigrationWorker } from '../../worker/create-worker';
import { backfillTableWorkflow, reconciliationWorkflow, verificationWorkflow } from '../../workflows';
import { drainAndStopSignal } from '../../workflows/messages';
import type { VerificationReport } from '../../model/messages';
import type { ReconciliationResult } from '../../workflows/reconciliation';

type BackfillInput = Parameters<typeof backfillTableWorkflow>[0];
type BackfillResult = Awaited<ReturnType<typeof backfillTableWorkflow>>;

/** Tuning the workflow input may take (partitions, chunks in flight); passed only when set. */
export interface BackfillTuning {
  partitions?: number;
  chunksInFlight?: number;
  chunksPerActivity?: number;
  maxRowsPerSecond?: number;
  /** The latency brake's ratio; null: off; 'default': the workflow's default brake. */
  latencyRatio?: number | null | 'default';
  /** The brake's probe query (the application's stand-in where no router runs); the default when unset. */
  probeQuery?: string;
}

/** The brake's settings the tuning asks for: null (off), the fields set, or undefined (the default brake). */
function latencyTarget(tuning: BackfillTuning): { ratio?: number; probeQuery?: string } | null | undefined {
  if (tuning.latencyRatio === null) return null;
  const set = {
    ...(typeof tuning.latencyRatio === 'number' && { ratio: tuning.latencyRatio }),
    ...(tuning.probeQuery !== undefined && { probeQuery: tuning.probeQuery }),
  };
  return Object.keys(set).length > 0 ? set : undefined;
}

export interface BackfillRun {
  result: BackfillResult;
  seconds: number;
  /** What reconciliation applied, when it ran alongside. */
  reconciled?: ReconciliationResult;
}

export function backfillInput(
  migration: string,
  table: TableRef,
  chunkSize: number,
  tuning: BackfillTuning,
): BackfillInput & BackfillTuning {
  return {
    migration,
    source: 'old',
    target: 'new',
    table,
    chunkSize,
    ...(tuning.partitions !== undefined && { partitions: tuning.partitions }),
    ...(tuning.chunksInFlight !== undefined && { chunksInFlight: tuning.chunksInFlight }),
    ...(tuning.chunksPerActivity !== undefined && { chunksPerActivity: tuning.chunksPerActivity }),
    ...((tuning.maxRowsPerSecond !== undefined || latencyTarget(tuning) !== undefined) && {
      throttle: {
        ...(tuning.maxRowsPerSecond !== undefined && { maxRowsPerSecond: tuning.maxRowsPerSecond }),
        ...(latencyTarget(tuning) !== undefined && { latencyTarget: latencyTarget(tuning) }),
      },
    }),
  };
}

export interface BackfillHooks {
  /** Right before the backfill starts (after the reconciliation workflow, when there is one). */
  onStart?: () => void;
  /** Right after the backfill finished, before reconciliation drains (e.g. stop a write load). */
  afterCopy?: () => Promise<void>;
  /** Run the reconciliation workflow alongside, and drain it after `afterCopy`. */
  reconcile?: boolean;
}

/**
 * Runs one backfill to completion on `worker` (which shuts down afterwards). The clock runs from
 * the start request to the result: worker start-up (bundling the workflows) is not counted, nor the
 * final drain of the change log.
 */
export async function runBackfill(
  worker: MigrationWorker,
  client: Client,
  workflowId: string,
  input: BackfillInput,
  hooks: BackfillHooks = {},
): Promise<BackfillRun> {
  return worker.runUntil(
    (async () => {
      const reconciliation = hooks.reconcile
        ? await client.workflow.start(reconciliationWorkflow, {
            taskQueue: worker.taskQueue,
            workflowId: `${workflowId}-reconciliation`,
            args: [{ migration: input.migration, from: 'old', to: 'new' }],
          })
        : undefined;
      hooks.onStart?.();
      const started = performance.now();
      const result = await client.workflow.execute(backfillTableWorkflow, {
        taskQueue: worker.taskQueue,
        workflowId,
        args: [input],
      });
      const seconds = (performance.now() - started) / 1000;
      await hooks.afterCopy?.();
      if (reconciliation === undefined) return { result, seconds };
      await reconciliation.signal(drainAndStopSignal);
      return { result, seconds, reconciled: await reconciliation.result() };
    })(),
  );
}

export interface HistoryStats {
  /** Workflow executions (each run of a continue-as-new chain counts once). */
  runs: number;
  /** Distinct workflow ids (one per workflow, child workflows included). */
  workflows: number;
  largestHistoryLength: number;
  largestHistoryBytes?: number;
}

async function listExecutions(client: Client, migration: string): Promise<WorkflowExecutionInfo[]> {
  const executions: WorkflowExecutionInfo[] = [];
  const query = `MigrationName = '${migration.replace(/'/g, "\\'")}'`;
  for await (const execution of client.workflow.list({ query })) executions.push(execution);
  return executions;
}

/**
 * History sizes of every execution tagged with this migration's MigrationName. Visibility is
 * updated asynchronously, so it waits (up to `waitMs`) until every listed execution is closed.
 */
export async function historyStats(
  client: Client,
  migration: string,
  waitMs = 15_000,
): Promise<HistoryStats> {
  const deadline = Date.now() + waitMs;
  let executions = await listExecutions(client, migration);
  while (
    Date.now() < deadline &&
    (executions.length === 0 || executions.some((execution) => execution.status.name === 'RUNNING'))
  ) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    executions = await listExecutions(client, migration);
  }
  const sizes = executions.map((execution) => execution.historySize ?? 0);
  return {
    runs: executions.length,
    workflows: new Set(executions.map((execution) => execution.workflowId)).size,
    largestHistoryLength: Math.max(0, ...executions.map((execution) => execution.historyLength)),
    ...(sizes.some((size) => size > 0) && { largestHistoryBytes: Math.max(...sizes) }),
  };
}

export interface VerificationRun {
  report: VerificationReport;
  seconds: number;
}

/** Runs verificationWorkflow (defaults) on the table just copied, timing it by wall clock. */
export async function runVerification(
  worker: MigrationWorker,
  client: Client,
  workflowId: string,
  migration: string,
  table: TableRef,
): Promise<VerificationRun> {
  return worker.runUntil(
    (async () => {
      const started = performance.now();
      const report = await client.workflow.execute(verificationWorkflow, {
        taskQueue: worker.taskQueue,
        workflowId,
        args: [{ migration, table, from: 'old', to: 'new' }],
      });
      return { report, seconds: (performance.now() - started) / 1000 };
    })(),
  );
}
