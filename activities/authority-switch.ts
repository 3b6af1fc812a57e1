// The write switch's inner part, run while the write fence holds every router's writes: one activity,
// so the writes wait for database work only, not for a Temporal round trip between each step.
// Guard the giving side, drain its change log to zero, move the receiving side's sequences past its
// values, swap capture (and lift the guard on the receiving side), and set the stage that lifts the
// fence. When authority goes back to old, new's guard is lifted too once drained: while old is
// authoritative the routers write new themselves (their mirror), as before the first switch. Every
// step is idempotent, so a retry runs them all again safely. The workflow (workflows/write-switch.ts)
// raises the fence before and undoes everything when this fails. A table whose changes cannot be
// carried over fails the switch with the cause: authority never moves past a change left behind.
import { Context } from '@temporalio/activity';
import type { ConnectionName } from '../model/connections';
import type { Stage } from '../model/stages';
import type { createCapture } from './capture';
import type { createFlags } from './flags';
import { refuse } from '../model/errors';
import type { TableRef } from '../model/tables';
import type { createSequences } from './sequences';
import type { ServerBinding } from '../model/servers';
import type { createSyncer } from './syncer';
import type { createGuards } from './write-guard';

export interface MoveWriteAuthorityInput {
  migration: string;
  servers: ServerBinding;
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
  guards: ReturnType<typeof createGuards>;
  capture: ReturnType<typeof createCapture>;
  syncer: Pick<ReturnType<typeof createSyncer>, 'drainChangeLog'>;
  sequences: ReturnType<typeof createSequences>;
  flags: ReturnType<typeof createFlags>;
}) {
  const { guards, capture, syncer, sequences, flags } = parts;
  return {
    moveWriteAuthority: async (input: MoveWriteAuthorityInput): Promise<MoveWriteAuthorityResult> => {
      const { tables, from, to, migration, servers } = input;
      const stepsMs: Record<string, number> = {};
      const step = async (name: string, work: () => Promise<unknown>) => {
        const started = Date.now();
        await work();
        stepsMs[name] = Date.now() - started;
        Context.current().heartbeat(name);
      };
      let changesDrained = 0;
      const scope = { migration, servers, tables };
      await step('guard', () => guards.installWriteGuard({ ...scope, connection: from }));
      await step('drain', async () => {
        for (;;) {
          const drained = await syncer.drainChangeLog({ migration, from, to, batchSize: 1000 });
          changesDrained += drained.entries;
          if (drained.failed.length > 0) {
            throw refuse(
              `changes of ${drained.failed.map((f) => `${f.table} (${f.message})`).join('; ')} could not be carried from ${from} to ${to}; authority stays where it was`,
            );
          }
          if (drained.entries === 0 && drained.backlog === 0) return;
        }
      });
      await step('sequences', () =>
        sequences.advanceSequences({ servers, from, to, tables, margin: input.sequenceMargin }),
      );
      await step('capture', async () => {
        await capture.installChangeCapture({ ...scope, connection: to });
        await capture.removeChangeCapture({ ...scope, connection: from });
        await guards.removeWriteGuard({ ...scope, connection: to });
        // Old takes writes again: the routers mirror into new themselves, so new takes them too.
        if (to === 'old') await guards.removeWriteGuard({ ...scope, connection: from });
      });
      await step('stage', () =>
        flags.setMigrationStage({
          servers,
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
