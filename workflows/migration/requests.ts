// The migration's message handlers: the status query, the operator's requests (pause, resume,
// approve, rollback, abort) and the trouble its own workflows report. Handlers validate and record
// on the state; the main loop acts on what they recorded. Rollback and abort are updates that wait
// for the main loop's answer (a ticket each), so the caller learns whether the move happened.
import { ApplicationFailure, condition, setHandler } from '@temporalio/workflow';
import { rollbackTarget } from '../../model/migration-plan';
import type { RequestAnswer } from './state';
import {
  abortUpdate,
  approveUpdate,
  backfillCopiedSignal,
  backfillTroubleSignal,
  migrationStatusQuery,
  pauseSignal,
  resumeSignal,
  rollbackSignal,
  rollbackUpdate,
  syncTroubleSignal,
  throttleUpdate,
} from '../messages';
import { throttleRequestProblem } from '../../model/messages';
import { failureCause } from './failure-cause';
import type { MigrationState } from './state';

/** Waits for the main loop's answer to `ticket`; a refusal fails the update with its reason. */
async function answerFor(
  state: MigrationState,
  ticket: number,
): Promise<Extract<RequestAnswer, { ok: true }>['value']> {
  await condition(() => state.answers.has(ticket));
  const answer = state.answers.get(ticket)!;
  state.answers.delete(ticket);
  if (!answer.ok) throw ApplicationFailure.create({ message: answer.reason, nonRetryable: true });
  return answer.value;
}

/** Runs a rollback or abort for the main loop; if it fails, the waiting update gets the reason first. */
export async function answering<T>(
  state: MigrationState,
  ticket: number,
  work: () => Promise<T>,
): Promise<T> {
  try {
    return await work();
  } catch (err) {
    if (!state.answers.has(ticket))
      state.answers.set(ticket, { ok: false, reason: failureCause(err).message });
    throw err;
  }
}

export function installRequestHandlers(state: MigrationState): void {
  const { status, memory, steps } = state;

  // ---- Trouble the migration's own workflows report: it holds with the cause. ----
  setHandler(backfillTroubleSignal, (trouble) => {
    state.backfillTrouble ??= trouble;
  });
  // How far each table's backfill got: shown in the migration's current details, nothing else.
  setHandler(backfillCopiedSignal, (report) => state.backfillReported(report));
  setHandler(syncTroubleSignal, ({ failing }) => {
    status.syncFailures = failing;
    memory.syncFailuresApproved = memory.syncFailuresApproved.filter((table) =>
      failing.some((failure) => failure.table === table),
    );
  });

  // ---- The operator's requests. ----
  setHandler(migrationStatusQuery, () => status);
  setHandler(pauseSignal, () => {
    if (status.paused) return;
    status.paused = true;
    state.note('paused by an operator');
    state.tellBackfills(pauseSignal);
  });
  setHandler(resumeSignal, () => {
    state.resumes += 1;
    if (status.held?.kind === 'sync') state.retrySync();
    if (status.paused) {
      status.paused = false;
      state.note('resumed by an operator');
      state.tellBackfills(resumeSignal);
    }
  });
  setHandler(rollbackSignal, () => {
    if (state.closed() || status.position === 0) {
      state.note(`rollback signal ignored: the migration is at ${status.step}, ${status.phase}`);
      return;
    }
    state.pendingRollback ??= {
      target: status.position - 1,
      by: 'operator (signal)',
      ticket: state.nextTicket(),
    };
  });
  setHandler(
    approveUpdate,
    ({ by }) => {
      const held = status.held!;
      state.approvals += 1;
      state.note(`approved by ${by ?? 'an operator'}: ${held.reason}`);
      return { released: held.reason };
    },
    {
      validator: (_request) => {
        if (status.held === null) {
          throw new Error(
            `nothing is waiting for approval: the migration is at ${status.step}, ${status.phase}${status.paused && status.phase !== 'paused' ? ' and paused' : ''}`,
          );
        }
      },
    },
  );
  setHandler(
    rollbackUpdate,
    async ({ to, by }) => {
      const ticket = state.nextTicket();
      state.pendingRollback = {
        target: rollbackTarget(to, steps, status.position),
        by: by ?? 'operator',
        ticket,
      };
      return answerFor(state, ticket);
    },
    {
      validator: ({ to }: { to: string }) => {
        if (state.closed()) throw new Error(`the migration is ${status.phase}; it can no longer roll back`);
        if (state.pendingRollback !== null) throw new Error('a rollback is already under way');
        rollbackTarget(to, steps, status.position);
      },
    },
  );
  setHandler(
    throttleUpdate,
    ({ by, ...knobs }) => {
      const who = by ?? 'an operator';
      const { maxRowsPerSecond, latencyRatio, niceRatio, copyPaused } = knobs;
      if (maxRowsPerSecond !== undefined) {
        status.maxRowsPerSecond = maxRowsPerSecond;
        state.note(
          `row limit ${maxRowsPerSecond === null ? 'lifted' : `set to ${maxRowsPerSecond} rows/s per table`} by ${who}`,
        );
        state.throttleBackfills(maxRowsPerSecond);
      }
      const tune = {
        ...(latencyRatio !== undefined && { latencyRatio }),
        ...(niceRatio !== undefined && { niceRatio }),
      };
      if (Object.keys(tune).length > 0) {
        status.copyKnobs = { ...status.copyKnobs, ...tune };
        if (latencyRatio !== undefined)
          state.note(
            `latency target ${latencyRatio === null ? 'off' : `set to ${latencyRatio}× the application's baseline`} by ${who}`,
          );
        if (niceRatio !== undefined) state.note(`nice ratio set to ${niceRatio} by ${who}`);
        state.tuneBackfills(tune);
      }
      if (copyPaused !== undefined && copyPaused !== (status.copyKnobs?.copyPaused ?? false)) {
        status.copyKnobs = { ...status.copyKnobs, copyPaused };
        state.note(`copying ${copyPaused ? 'paused' : 'resumed'} by ${who}`);
        if (copyPaused) state.tellBackfills(pauseSignal);
        else if (!status.paused) state.tellBackfills(resumeSignal);
      }
      return { ...knobs, backfillsTold: state.backfills.size };
    },
    {
      validator: (request) => {
        const problem = throttleRequestProblem(request);
        if (problem !== null) throw new Error(problem);
        if (state.closed()) throw new Error(`the migration is ${status.phase}; there is nothing to throttle`);
      },
    },
  );
  setHandler(
    abortUpdate,
    async ({ by }) => {
      const ticket = state.nextTicket();
      state.pendingAbort = { by: by ?? 'operator', ticket };
      return { abortedAt: (await answerFor(state, ticket)).from };
    },
    {
      validator: (_request) => {
        if (state.closed()) throw new Error(`the migration is ${status.phase}; there is nothing to abort`);
      },
    },
  );
}
