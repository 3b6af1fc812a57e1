// The activities the migration workflow calls itself, with their timeouts and retries (its children
// have their own). A refusal retrying cannot heal is marked non-retryable by the activity boundary
// (activities/index.ts), so it ends at once whatever the policy says.
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../../activities';

const RETRY = { initialInterval: '1 second', maximumInterval: '30 seconds' } as const;
/** Every activity heartbeats while it runs (activities/heartbeats.ts): a worker that died is noticed in seconds. */
const HEARTBEAT = '15 seconds';

/** Quick reads and writes of the stage, the routers' figures and the reconciliation's state. */
export const { setMigrationStage, readGateFigures, ensureReconciliation, reconciliationStatus, bindServers } =
  proxyActivities<Activities>({ startToCloseTimeout: '1 minute', heartbeatTimeout: HEARTBEAT, retry: RETRY });

/** Preparing, accepting a schema change, capture and guards: a few statements per table. */
export const {
  prepareTables,
  acceptSchemaChanges,
  installChangeCapture,
  removeChangeCapture,
  removeWriteGuard,
  removeTruncateGuard,
  removeMigrationHelpers,
} = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: HEARTBEAT,
  retry: RETRY,
});

/** Indexes and foreign keys of the tables created on new: as long as the table is large. */
export const { completeTargetTables } = proxyActivities<Activities>({
  startToCloseTimeout: '24 hours',
  heartbeatTimeout: HEARTBEAT,
  retry: RETRY,
});

export const { benchmarkQueries } = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: HEARTBEAT,
  retry: { ...RETRY, maximumAttempts: 3 },
});

/** Waits for reconciliation to drain what it holds and stop. */
export const { stopReconciliation } = proxyActivities<Activities>({
  startToCloseTimeout: '30 minutes',
  heartbeatTimeout: HEARTBEAT,
  retry: RETRY,
});
