// The write switch's inner part, run while the write fence holds every router's writes: one activity,
// so the writes wait for database work only, not for a Temporal round trip between each step.
// Guard the giving side, drain its change log to zero, move the receiving side's sequences past its
// values, swap capture (and lift an old guard on the receiving side), and set the stage that lifts
// the fence. Every step is idempotent, so a retry runs them all again safely. The workflow
// (workflows/write-switch.ts) raises the fence before and undoes everything when this fails.
import { Context } from '@temporalio/activity';
import type { ConnectionName } from '../config/connections';
import type { Stage } from '../router/stage-store';
import type { createCapture } from './capture';
import type { createFlags } from './flags';
import type { TableRef } from './inspector';
import type { createSequences } from './sequences';
import type { createSyncer } from './syncer';
import type { createWriteGuard } from './write-guard';

export interface MoveWriteAuthorityInput {
  migration: string;
  tables: TableRef[];
  from: ConnectionName;
  to: ConnectionName;
  /** The stage that lifts the fence. */
  stage: Stage;
  readPercent: number;
  sequenceMargin?: number;
}

export interface MoveWriteAuthorityResult {
  changesDrained: number;
  /** Milliseconds per step: guard, drain, sequences, capture, stage. */
  stepsMs: Record<string, number>;
}

export function createAuthoritySwitch(parts: {
  writeGuard: ReturnType<typeof createWriteGuard>;
  capture: ReturnType<typeof createCapture>;
  syncer: ReturnType<typeof createSyncer>;
  sequences: ReturnType<typeof createSequences>;
  flags: ReturnType<typeof createFlags>;
}) {
  const { writeGuard, capture, syncer, sequences, flags } = parts;
  return {
    moveWriteAuthority: async (input: MoveWriteAuthorityInput): Promise<MoveWriteAuthorityResult> => {
      const { tables, from, to } = input;
      const stepsMs: Record<string, number> = {};
      const step = async (name: string, work: () => Promise<unknown>) => {
        const started = Date.now();
        await work();
        stepsMs[name] = Date.now() - started;
        Context.current().heartbeat(name);
      };
      let changesDrained = 0;
      await step('guard', () => writeGuard.installWriteGuard({ connection: from, tables }));
      await step('drain', async () => {
        for (;;) {
          const drained = await syncer.drainChangeLog({ from, to, batchSize: 1000 });
          changesDrained += drained.entries;
          if (drained.entries === 0 && drained.backlog === 0) return;
        }
      });
      await step('sequences', () =>
        sequences.advanceSequences({ from, to, tables, margin: input.sequenceMargin }),
      );
      await step('capture', async () => {
        await capture.installChangeCapture({ connection: to, tables });
        await capture.removeChangeCapture({ connection: from, tables });
        await writeGuard.removeWriteGuard({ connection: to, tables });
      });
      await step('stage', () =>
        flags.setMigrationStage({
          connection: 'old',
          migration: input.migration,
          stage: input.stage,
          readPercent: input.readPercent,
        }),
      );
      return { changesDrained, stepsMs };
    },
  };
}
