// Flags: the migration changes its stage (and live read percentage) through these activities; every
// router follows the stage store (router/stage-store.ts), and the cutover asks which routers are alive.
import { setTimeout as sleep } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import type { ConnectionName } from '../model/connections';
import { NO_STATS, statsSince, type GateFigures, type RouterStats } from '../model/gate-stats';
import { listRouters, liveRouters, setStage, type RegisteredRouter } from '../db/stage-store';
import type { Stage, StageState } from '../model/stages';
import { ensureHelperSchema } from '../db/helper-schema';
import { refuse } from '../model/errors';
import type { ConnectionPools } from '../db/pools';
import type { ServerBinding } from '../model/servers';

/** How often the fence's acknowledgements are read: every millisecond here is a write held. */
const FENCE_POLL_MS = 20;

export function createFlags(pools: ConnectionPools) {
  return {
    setMigrationStage: async (input: {
      servers: ServerBinding;
      connection: ConnectionName;
      migration: string;
      stage: Stage;
      readPercent?: number;
      /** Raise the write fence (router/stage-store.ts); any change without it lifts the fence. */
      fenced?: boolean;
    }): Promise<StageState> => {
      const pool = pools.get(input.connection);
      await ensureHelperSchema(pool);
      try {
        return await setStage(pool, input.migration, {
          stage: input.stage,
          ...(input.readPercent !== undefined && { readPercent: input.readPercent }),
          ...(input.fenced !== undefined && { fenced: input.fenced }),
        });
      } catch (err) {
        if ((err as { code?: string }).code !== undefined) throw err;
        throw refuse((err as Error).message);
      }
    },

    listMigrationRouters: async (input: {
      servers: ServerBinding;
      connection: ConnectionName;
      migration: string;
    }): Promise<RegisteredRouter[]> => listRouters(pools.get(input.connection), input.migration),

    /**
     * The read ramp's gate figures: the change of every live router's counters since `baseline`
     * (the snapshot an earlier call returned), summed. Keep the snapshot for the next window.
     */
    readGateFigures: async (input: {
      servers: ServerBinding;
      connection: ConnectionName;
      migration: string;
      baseline?: Record<string, RouterStats>;
      silentAfterSeconds?: number;
    }): Promise<GateFigures & { routers: number; snapshot: Record<string, RouterStats> }> => {
      const routers = await liveRouters(
        pools.get(input.connection),
        input.migration,
        input.silentAfterSeconds,
      );
      const snapshot = Object.fromEntries(
        routers.map((router) => [router.routerId, router.stats ?? NO_STATS]),
      );
      return { ...statsSince(snapshot, input.baseline), routers: routers.length, snapshot };
    },

    /**
     * Waits until every live router (heard from within `silentAfterSeconds`) has acknowledged the
     * write fence of stage version `version`, or `timeoutMs` passes. Returns who did and who did not:
     * the switch goes ahead only when nobody is missing.
     */
    awaitRouterFence: async (input: {
      servers: ServerBinding;
      connection: ConnectionName;
      migration: string;
      version: number;
      timeoutMs: number;
      silentAfterSeconds?: number;
    }): Promise<{ acknowledged: string[]; missing: string[] }> => {
      const deadline = Date.now() + input.timeoutMs;
      for (;;) {
        const routers = await liveRouters(
          pools.get(input.connection),
          input.migration,
          input.silentAfterSeconds,
        );
        const acknowledged = routers.filter((router) => (router.fenceAcknowledged ?? 0) >= input.version);
        const missing = routers.filter((router) => (router.fenceAcknowledged ?? 0) < input.version);
        if (missing.length === 0 || Date.now() >= deadline) {
          return {
            acknowledged: acknowledged.map((router) => router.routerId),
            missing: missing.map((router) => router.routerId),
          };
        }
        Context.current().heartbeat(missing.length);
        await sleep(FENCE_POLL_MS);
      }
    },
  };
}
