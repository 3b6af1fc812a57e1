// Flags: the migration changes its stage (and live read percentage) through these activities; every
// router follows the stage store (router/stage-store.ts), and the cutover asks which routers are alive.
import type { ConnectionName } from '../config/connections';
import {
  listRouters,
  setStage,
  type RegisteredRouter,
  type Stage,
  type StageState,
} from '../router/stage-store';
import { ensureHelperSchema } from './helper-schema';
import { refuse } from './inspector';
import type { ConnectionPools } from './pools';

export function createFlags(pools: ConnectionPools) {
  return {
    setMigrationStage: async (input: {
      connection: ConnectionName;
      migration: string;
      stage: Stage;
      readPercent?: number;
    }): Promise<StageState> => {
      const pool = pools.get(input.connection);
      await ensureHelperSchema(pool);
      try {
        return await setStage(pool, input.migration, {
          stage: input.stage,
          ...(input.readPercent !== undefined && { readPercent: input.readPercent }),
        });
      } catch (err) {
        if ((err as { code?: string }).code !== undefined) throw err;
        throw refuse((err as Error).message);
      }
    },

    listMigrationRouters: async (input: {
      connection: ConnectionName;
      migration: string;
    }): Promise<RegisteredRouter[]> => listRouters(pools.get(input.connection), input.migration),
  };
}
