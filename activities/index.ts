// All activities, built by one factory from their dependencies, so tests pass real or fake pools.
import { createCapture } from './capture';
import { createCopier, type CopierHooks } from './copier';
import { createFlags } from './flags';
import { createInspector } from './inspector';
import { createKeyRanges } from './key-ranges';
import type { ConnectionPools } from './pools';
import { createSyncer } from './syncer';
import { TableShapes } from './table-shapes';
import { createThrottler } from './throttler';

export interface ActivityDependencies {
  pools: ConnectionPools;
  copierHooks?: CopierHooks;
}

export function createActivities({ pools, copierHooks }: ActivityDependencies) {
  const shapes = new TableShapes(pools);
  return {
    ...createInspector(pools),
    ...createKeyRanges(pools, shapes),
    ...createCopier(pools, shapes, copierHooks),
    ...createCapture(pools, shapes),
    ...createSyncer(pools, shapes),
    ...createThrottler(pools),
    ...createFlags(pools),
  };
}

export type Activities = ReturnType<typeof createActivities>;
