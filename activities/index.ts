// All activities, built by one factory from their dependencies, so tests pass real or fake pools.
import { createAuthoritySwitch } from './authority-switch';
import { createCapture } from './capture';
import { createCopier, type CopierHooks } from './copier';
import { createFlags } from './flags';
import { createHelperRemoval } from './helper-removal';
import { createInspector } from './inspector';
import { createKeyRanges } from './key-ranges';
import type { ConnectionPools } from './pools';
import { createQueryBenchmark } from './query-benchmark';
import { createRangeVerifier, type VerifierHooks } from './range-verifier';
import { createReconciliationControl } from './reconciliation-control';
import { createSequences } from './sequences';
import { createSyncer } from './syncer';
import { TableShapes } from './table-shapes';
import { createThrottler } from './throttler';
import { createWriteGuard } from './write-guard';

/** For tests: pauses at the points where a crash or a race does harm. */
export interface ActivityHooks {
  copierHooks?: CopierHooks;
  verifierHooks?: VerifierHooks;
}

export interface ActivityDependencies extends ActivityHooks {
  pools: ConnectionPools;
}

export function createActivities({ pools, copierHooks, verifierHooks }: ActivityDependencies) {
  const shapes = new TableShapes(pools);
  const syncer = createSyncer(pools, shapes);
  const capture = createCapture(pools, shapes);
  const flags = createFlags(pools);
  const sequences = createSequences(pools);
  const writeGuard = createWriteGuard(pools);
  return {
    ...createInspector(pools),
    ...createKeyRanges(pools, shapes),
    ...createCopier(pools, shapes, copierHooks),
    ...capture,
    ...syncer,
    ...createRangeVerifier(pools, shapes, syncer.syncKeys, verifierHooks),
    ...createThrottler(pools),
    ...flags,
    ...createQueryBenchmark(pools),
    ...sequences,
    ...writeGuard,
    ...createAuthoritySwitch({ writeGuard, capture, syncer, sequences, flags }),
    ...createReconciliationControl(),
    ...createHelperRemoval(pools),
  };
}

export type Activities = ReturnType<typeof createActivities>;
