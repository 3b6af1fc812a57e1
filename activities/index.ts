// All activities, built by one factory from their dependencies, so tests pass real or fake pools.
import { createCopier } from './copier';
import { createInspector } from './inspector';
import type { ConnectionPools } from './pools';

export interface ActivityDependencies {
  pools: ConnectionPools;
}

export function createActivities({ pools }: ActivityDependencies) {
  return {
    ...createInspector(pools),
    ...createCopier(pools),
  };
}

export type Activities = ReturnType<typeof createActivities>;
