// For workflow tests: every activity the migration and its children call, as a plain function that
// records the call (which activity, from which workflow, with what) and answers as a healthy stack
// would, unless a test tells it otherwise with `on`. The children run for real: a backfill whose
// table has no rows to plan (one activity) and a verification of one open range (two), so the
// migration's commands are the ones a real run makes, in the same order, at a few milliseconds each.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Activities } from '../../activities';
import { NO_STATS, type GateFigures } from '../../model/gate-stats';
import { idleReconciliationStatus, type ReconciliationStatus } from '../../model/messages';
import type { QueryBenchmarkResult } from '../../model/query-benchmark';
import type { ServerBinding } from '../../model/servers';
import { noCounts } from '../../model/verification-counts';

type Name = keyof Activities;
type Input<K extends Name> = Parameters<Activities[K]>[0];
type Output<K extends Name> = Awaited<ReturnType<Activities[K]>>;
type Fake<K extends Name> = (input: Input<K>, call: ActivityCall) => Output<K> | Promise<Output<K>>;
type Fakes = { [K in Name]?: Fake<K> };

export interface ActivityCall {
  activity: Name;
  workflowId: string;
  workflowType: string;
  input: unknown;
  /** 1 for the first try of this activity execution. */
  attempt: number;
}

export const SERVERS: ServerBinding = {
  old: {
    id: 'old-id',
    systemIdentifier: '1',
    database: 'shop',
    databaseOid: 1,
    role: 'migrator',
    label: 'old:5432/shop',
  },
  new: {
    id: 'new-id',
    systemIdentifier: '2',
    database: 'shop',
    databaseOid: 2,
    role: 'migrator',
    label: 'new:5432/shop',
  },
};

export function reconciliationStatus(overrides: Partial<ReconciliationStatus> = {}): ReconciliationStatus {
  return { ...idleReconciliationStatus(), runs: 1, ...overrides };
}

/** Router figures over a soak window: nothing measured, but for `changes`. */
export function gateFigures(
  changes: Partial<Omit<GateFigures, 'totals'>> & { totals?: Partial<GateFigures['totals']> } = {},
): GateFigures {
  return {
    shadowMismatchRate: null,
    newErrorRate: null,
    readLatencyRatio: null,
    ...changes,
    totals: { ...NO_STATS, ...changes.totals },
  };
}

/** A query benchmark's answer: each query's p50 ratio new/old (p95 the same on both sides). */
export function queryBenchmark(ratios: Record<string, number>): QueryBenchmarkResult {
  return {
    queries: Object.entries(ratios).map(([name, ratio], i) => ({
      name,
      fingerprint: `f${i + 1}`,
      old: { p50: 1, p95: 2 },
      new: { p50: ratio, p95: 2 },
      ratioP50: ratio,
      ratioP95: 1,
    })),
    skipped: [],
  };
}

/** What removing the migration's own objects calls (retire, abort, a refusal), in order. */
export const REMOVAL_CALLS = [
  'removeChangeCapture new',
  'removeChangeCapture old',
  'removeWriteGuard old',
  'removeTruncateGuard old',
  'removeWriteGuard new',
  'removeTruncateGuard new',
  'removeMigrationHelpers new',
  'removeMigrationHelpers old',
];

/** A call as "activity connection" (the connection when it names one). */
export function callText(call: ActivityCall): string {
  return `${call.activity} ${(call.input as { connection?: string }).connection ?? ''}`.trim();
}

/** A failure as the activity boundary makes it (activities/index.ts): non-retryable, with its type. */
export function fault(type: string, message: string, table?: string): ApplicationFailure {
  return ApplicationFailure.create({
    type,
    message,
    nonRetryable: true,
    ...(table !== undefined && { details: [{ table }] }),
  });
}

let stageVersion = 0;

/**
 * For an activity only workflows these tests do not run call (reconciliation's, the copy's): a
 * test that reaches it sets its own answer with `on`, and one that does not fails saying so.
 */
function notFaked(activity: Name): () => never {
  return () => {
    throw fault(
      'NotFaked',
      `workflow tests fake no ${activity}: set its answer with fakes.on('${activity}', ...)`,
    );
  };
}

/** A healthy stack: every figure clean, every switch acknowledged, nothing to copy or repair. */
const HEALTHY: { [K in Name]: Fake<K> } = {
  bindServers: () => SERVERS,
  prepareTables: (input) => ({
    tables: input.tables.map(({ table }) => ({ table, estimatedRows: 100 })),
    created: [],
    warnings: [],
  }),
  acceptSchemaChanges: () => ({ summary: 'both sides match again' }),
  completeTargetTables: (input) => ({
    created: input.tables.map((t) => `indexes of ${t.schema}.${t.table}`),
  }),
  installChangeCapture: () => undefined,
  removeChangeCapture: () => undefined,
  installWriteGuard: () => undefined,
  removeWriteGuard: () => undefined,
  removeTruncateGuard: () => undefined,
  removeMigrationHelpers: () => ({ dropped: true }),
  setMigrationStage: (input) => ({
    stage: input.stage,
    readPercent: input.readPercent ?? 0,
    version: ++stageVersion,
    fenced: input.fenced ?? false,
  }),
  readGateFigures: () => ({
    totals: { ...NO_STATS },
    shadowMismatchRate: null,
    newErrorRate: null,
    readLatencyRatio: null,
    routers: 1,
    snapshot: { router: { ...NO_STATS } },
  }),
  ensureReconciliation: () => undefined,
  reconciliationStatus: () => reconciliationStatus(),
  stopReconciliation: () => reconciliationStatus({ stopping: 'now' }),
  benchmarkQueries: () => ({ queries: [], skipped: [] }),
  awaitRouterFence: () => ({ acknowledged: ['router'], missing: [] }),
  moveWriteAuthority: () => ({ changesDrained: 3, stepsMs: { guard: 1, drain: 1 } }),
  planPartitions: () => ({ partitions: [], maxKey: null }),
  drainChangeLog: notFaked('drainChangeLog'),
  syncKeys: notFaked('syncKeys'),
  checkSourceHealth: () => ({
    reason: null,
    probeLatencyMs: 0.3,
    activeConnections: 0,
    replicaLagSeconds: 0,
  }),
  // An application as fast as before the copy: the brake never comes on.
  measureApplicationLatency: () => ({
    routers: null,
    probe: { p99Ms: 0.5, runs: 20, applicationSessions: 1 },
  }),
  installTruncateGuard: notFaked('installTruncateGuard'),
  advanceSequences: notFaked('advanceSequences'),
  listMigrationRouters: notFaked('listMigrationRouters'),
  copyChunk: notFaked('copyChunk'),
  copyChunks: notFaked('copyChunks'),
  findChunkBounds: notFaked('findChunkBounds'),
  verifyRange: () => ({ ...noCounts(), rowsFrom: 100, rowsTo: 100, chunks: 1, reached: null, done: true }),
};

export class FakeActivities {
  readonly calls: ActivityCall[] = [];
  private fakes: Fakes = {};

  /** Forgets the calls and every behaviour a test set: back to a healthy stack. */
  reset(): void {
    this.calls.length = 0;
    this.fakes = {};
    this.openGates();
  }

  private readonly gates = new Set<() => void>();

  /**
   * A gate a fake can wait at: `opened` resolves once the test calls `open`. A test opens every gate
   * it made before it ends (see openGates).
   */
  gate(): { opened: Promise<void>; open: () => void } {
    let resolve: () => void = () => undefined;
    const opened = new Promise<void>((done) => (resolve = done));
    const open = () => {
      this.gates.delete(open);
      resolve();
    };
    this.gates.add(open);
    return { opened, open };
  }

  /**
   * Opens the gates left closed and says how many there were. An activity still waiting when its
   * workflow ends keeps the test server's time skipping locked for good (so does a child workflow
   * that ends after its parent): every later soak of the file would pass in real time.
   */
  openGates(): number {
    const left = [...this.gates];
    for (const open of left) open();
    return left.length;
  }

  /** From now on `activity` answers with `fake` (which may throw, or wait). */
  on<K extends Name>(activity: K, fake: Fake<K>): void {
    (this.fakes as Record<K, Fake<K>>)[activity] = fake;
  }

  /** Calls of `activity` (or of any, when none is named), in the order they were made. */
  called(activity?: Name): ActivityCall[] {
    return this.calls.filter((call) => activity === undefined || call.activity === activity);
  }

  /** The stages set (setMigrationStage), by any workflow or by `workflowId`, as "stage readPercent" and "+fence". */
  stagesSet(workflowId?: string): string[] {
    return this.called('setMigrationStage')
      .filter((call) => workflowId === undefined || call.workflowId === workflowId)
      .map((call) => {
        const input = call.input as Input<'setMigrationStage'>;
        return `${input.stage} ${input.readPercent ?? 0}${input.fenced === true ? ' +fence' : ''}`;
      });
  }

  /** The inputs of `activity`'s calls, typed. */
  inputs<K extends Name>(activity: K): Array<Input<K>> {
    return this.called(activity).map((call) => call.input as Input<K>);
  }

  /** The activities for the worker: each records its call, then answers. */
  activities(): Record<Name, (input: unknown) => Promise<unknown>> {
    const activities = {} as Record<Name, (input: unknown) => Promise<unknown>>;
    for (const activity of Object.keys(HEALTHY) as Name[]) {
      activities[activity] = async (input: unknown) => {
        const info = Context.current().info;
        const call: ActivityCall = {
          activity,
          workflowId: info.workflowExecution?.workflowId ?? '',
          workflowType: info.workflowType ?? '',
          input,
          attempt: info.attempt,
        };
        this.calls.push(call);
        const fake = (this.fakes[activity] ?? HEALTHY[activity]) as (
          input: unknown,
          call: ActivityCall,
        ) => unknown;
        return await fake(input, call);
      };
    }
    return activities;
  }
}
