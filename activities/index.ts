// All activities, built by one factory from their dependencies, so tests pass real or fake pools.
// Every activity that touches a database first checks that this worker is connected to the servers
// the migration recorded when it prepared (server-identity.ts): a worker with another stack's URLs
// fails at once, naming both, instead of running the migration against the wrong databases. The
// few that do not touch a database's data are listed in NO_DATA; the compiler checks that every
// other activity takes the binding.
import { ApplicationFailure, TemporalFailure } from '@temporalio/common';
import { createAuthoritySwitch } from './authority-switch';
import { createCapture } from './capture';
import { createCopier, type CopierHooks } from './copier';
import { createFlags } from './flags';
import { createGuards } from './write-guard';
import { createHelperRemoval } from './helper-removal';
import { withHeartbeats } from './heartbeats';
import { lastingFault } from './failures';
import { redactError, redactSecrets } from '../model/redact';
import type { TableRef } from '../model/tables';
import { createKeyRanges } from './key-ranges';
import { observeActivities, tableLabel, WorkflowLabels, type ActivityMetrics } from './metrics';
import type { ConnectionPools } from '../db/pools';
import { createPreparation } from './preparation';
import { createQueryBenchmark } from './query-benchmark';
import { createRangeVerifier, type VerifierHooks } from './range-verifier';
import { createReconciliationControl } from './reconciliation-control';
import { createSequences } from './sequences';
import { ServerIdentities } from './server-identity';
import { MigrationFault, WRONG_SERVERS } from '../model/errors';
import type { ServerBinding } from '../model/servers';
import type { SyncKeysInput } from '../db/sync';
import { createSyncer, type DrainChangeLogInput } from './syncer';
import { TableRegistry } from './table-registry';
import { createSourceLooks, createThrottler } from './throttler';

/** For tests: pauses at the points where a crash or a race does harm. */
export interface ActivityHooks {
  copierHooks?: CopierHooks;
  verifierHooks?: VerifierHooks;
}

export interface ActivityDependencies extends ActivityHooks {
  pools: ConnectionPools;
  /** Where the activities report rows copied, throttling, sync backlog and verification (worker/metrics.ts). */
  metrics?: ActivityMetrics;
}

/**
 * Activities that touch no table data: binding itself, the source's health figures, and the control
 * of the reconciliation workflow (Temporal only).
 */
const NO_DATA = [
  'bindServers',
  'checkSourceHealth',
  'ensureReconciliation',
  'stopReconciliation',
  'reconciliationStatus',
] as const;
type NoData = (typeof NO_DATA)[number];

interface Bound {
  servers: ServerBinding;
}

/** Names of the activities whose input lacks the server binding. */
type Unbound<T> = {
  [K in keyof T]: T[K] extends (input: infer I) => Promise<unknown>
    ? I extends { servers: ServerBinding }
      ? never
      : K
    : K;
}[keyof T];

/**
 * The activity boundary: each activity that touches data first checks the servers; and a fault
 * (model/errors.ts: a refusal, a schema change, the wrong servers, a sync that cannot heal) leaves
 * as Temporal's non-retryable failure of the fault's type, so the workflow holds with the cause.
 */
function atTheBoundary<T extends object>(identities: ServerIdentities, activities: T): T {
  const bounded: Record<string, unknown> = {};
  for (const [name, activity] of Object.entries(activities) as Array<
    [string, (input: unknown) => Promise<unknown>]
  >) {
    const checksServers = !(NO_DATA as readonly string[]).includes(name);
    bounded[name] = async (input: { servers?: ServerBinding } | undefined) => {
      try {
        if (checksServers) {
          if (input?.servers === undefined) {
            throw new MigrationFault(
              WRONG_SERVERS,
              `activity ${name} was called without the migration's server binding, so it cannot tell whether this worker points at the migration's databases; it refuses to touch them`,
            );
          }
          await identities.verify(input.servers);
        }
        return await withHeartbeats(() => activity(input));
      } catch (caught) {
        // A database error retrying cannot heal leaves as the fault it is, not to be retried for ever.
        const err = lastingFault(caught, name) ?? caught;
        if (!(err instanceof MigrationFault)) {
          throw err instanceof TemporalFailure ? err : redactError(err);
        }
        throw ApplicationFailure.create({
          type: err.type,
          message: redactSecrets(err.message),
          nonRetryable: true,
          ...(err.details !== undefined && { details: [err.details] }),
        });
      }
    };
  }
  return bounded as T;
}

function buildActivities(
  { pools, copierHooks, verifierHooks, metrics }: ActivityDependencies,
  identities: ServerIdentities,
) {
  const activities = buildUnobserved(
    pools,
    identities,
    {
      ...copierHooks,
      ...(metrics !== undefined && {
        afterChunkCommitted: (chunk, result) => {
          copierHooks?.afterChunkCommitted?.(chunk, result);
          metrics.chunkCopied(
            { migration: chunk.migration, table: tableLabel(chunk.table) },
            result.rowsRead,
            result.rowsCopied,
          );
        },
      }),
    },
    verifierHooks,
  );
  return metrics === undefined ? activities : observeActivities(activities, metrics, new WorkflowLabels());
}

function buildUnobserved(
  pools: ConnectionPools,
  identities: ServerIdentities,
  copierHooks: CopierHooks | undefined,
  verifierHooks: VerifierHooks | undefined,
) {
  const registry = new TableRegistry(pools);
  const guards = createGuards(pools, registry);
  const syncer = createSyncer(pools, registry, {
    // One look at both sides per drain batch: the tables' shapes, checked, and their partitions.
    batchShapes: async (input) => {
      const batch = await registry.forBatch(input);
      const scope = { migration: input.migration };
      await guards.coverPartitions({
        ...scope,
        connection: input.from,
        adoptRows: true,
        looked: batch.looked.from,
      });
      await guards.coverPartitions({
        ...scope,
        connection: input.to,
        adoptRows: false,
        looked: batch.looked.to,
      });
      return batch;
    },
  });
  const { coverPartitions: _drainsCoverPartitions, ...guardActivities } = guards;
  const capture = createCapture(pools, registry);
  const flags = createFlags(pools);
  const sequences = createSequences(pools);
  return {
    ...createPreparation(pools, registry, identities, guards),
    ...createKeyRanges(pools, registry),
    ...createCopier(pools, registry, createSourceLooks(pools), copierHooks),
    ...capture,
    syncKeys: (input: SyncKeysInput & Bound) => syncer.syncKeys(input),
    drainChangeLog: (input: DrainChangeLogInput & Bound) => syncer.drainChangeLog(input),
    ...createRangeVerifier(pools, registry, syncer.syncKeys, verifierHooks),
    ...createThrottler(pools),
    ...flags,
    ...createQueryBenchmark(pools),
    ...sequences,
    ...guardActivities,
    ...createAuthoritySwitch({ guards, capture, syncer, sequences, flags }),
    ...createReconciliationControl(),
    ...createHelperRemoval(pools),
  };
}

export function createActivities(dependencies: ActivityDependencies) {
  const identities = new ServerIdentities(dependencies.pools);
  const activities = buildActivities(dependencies, identities);
  // Fails to compile when an activity that touches data does not take the server binding.
  const everyActivityBound: [Exclude<Unbound<typeof activities>, NoData>] extends [never]
    ? true
    : Exclude<Unbound<typeof activities>, NoData> = true;
  void everyActivityBound;
  return atTheBoundary(identities, activities);
}

export type Activities = ReturnType<typeof createActivities>;

/**
 * What a migration's prepare step does, for code that runs a router without the migration workflow
 * (the router benchmark, router tests): binds the servers, checks and claims the tables on both
 * sides, guards TRUNCATE and installs capture on old. Returns the binding for later activity calls.
 */
export async function prepareWithoutWorkflow(
  activities: Activities,
  migration: string,
  tables: TableRef[],
): Promise<ServerBinding> {
  const servers = await activities.bindServers({ migration });
  await activities.prepareTables({
    migration,
    servers,
    tables: tables.map((table) => ({ table, createIfMissing: false })),
  });
  await activities.installChangeCapture({ migration, servers, connection: 'old', tables });
  return servers;
}
