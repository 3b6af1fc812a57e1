// The migration's steps and the rules for moving between them: plain data and pure functions, shared
// by the workflow, the config check and the CLI (this module imports no Temporal code).
import type { Stage } from './stages';

export interface StagePosition {
  stage: Stage;
  readPercent: number;
}

/** The default read ramp of `live`, in percent of reads served by new. */
export const DEFAULT_READ_STEPS = [1, 5, 25, 50, 100];

/** Stages whose entry can be made to wait for an operator's approval. */
export const APPROVAL_POINTS = ['dual_write', 'shadow', 'live', 'switched', 'complete'] as const;
export type ApprovalPoint = (typeof APPROVAL_POINTS)[number];

/** off, dual_write, shadow, live at each read step, switched, complete. */
export function planSteps(readSteps: number[]): StagePosition[] {
  return [
    { stage: 'off', readPercent: 0 },
    { stage: 'dual_write', readPercent: 0 },
    { stage: 'shadow', readPercent: 0 },
    ...readSteps.map((readPercent) => ({ stage: 'live' as const, readPercent })),
    { stage: 'switched', readPercent: 100 },
    { stage: 'complete', readPercent: 100 },
  ];
}

export function stepLabel(step: StagePosition): string {
  return step.stage === 'live' ? `live ${step.readPercent}%` : step.stage;
}

/** Where new holds write authority. */
export function newIsAuthoritative(step: StagePosition): boolean {
  return step.stage === 'switched' || step.stage === 'complete';
}

/** Problems with a read ramp, for the config check; empty when it is fine. */
export function readStepProblems(readSteps: number[]): string[] {
  const problems: string[] = [];
  if (readSteps.length === 0) problems.push('must list at least one percentage, ending with 100');
  readSteps.forEach((step, i) => {
    if (!Number.isInteger(step) || step < 1 || step > 100) {
      problems.push(`${step} is not a whole percentage from 1 to 100`);
    } else if (i > 0 && step <= readSteps[i - 1]!) {
      problems.push(`must grow step by step; ${step} comes after ${readSteps[i - 1]}`);
    }
  });
  if (readSteps.length > 0 && readSteps[readSteps.length - 1] !== 100) {
    problems.push('must end with 100: the write switch needs every read on new first');
  }
  return problems;
}

/**
 * The step a rollback goes to: `off`, `dual_write`, `shadow`, `live` (the highest live step below the
 * current one), `live:25` (or `live 25%`), `switched`. Throws a message for the operator when the
 * target is unknown or not earlier than the current step.
 */
export function rollbackTarget(text: string, steps: StagePosition[], current: number): number {
  const wanted = text.trim().toLowerCase();
  const match = /^live(?:[: ]\s*(\d+)%?)?$/.exec(wanted);
  const below = steps.slice(0, current).map((step, index) => ({ step, index }));
  let found: { step: StagePosition; index: number } | undefined;
  if (match !== null) {
    const percent = match[1] === undefined ? undefined : Number(match[1]);
    found = below
      .filter(({ step }) => step.stage === 'live' && (percent === undefined || step.readPercent === percent))
      .pop();
  } else {
    found = below.find(({ step }) => step.stage === wanted);
  }
  if (found !== undefined) return found.index;
  const known = steps.some(
    (step) =>
      step.stage === wanted ||
      (match !== null &&
        step.stage === 'live' &&
        (match[1] === undefined || step.readPercent === Number(match[1]))),
  );
  const earlier = below.map(({ step }) => (step.stage === 'live' ? `live:${step.readPercent}` : step.stage));
  if (!known) {
    throw new Error(
      `there is no step ${text} in this migration; its steps are ${steps.map((step) => (step.stage === 'live' ? `live:${step.readPercent}` : step.stage)).join(', ')}`,
    );
  }
  throw new Error(
    earlier.length === 0
      ? `the migration is at ${stepLabel(steps[current]!)}; there is nothing earlier to roll back to`
      : `the migration is at ${stepLabel(steps[current]!)}; it can roll back to ${earlier.join(', ')}, not to ${text}`,
  );
}

/** What the read ramp's gates allow; see workflows/migration.ts. */
export interface GateLimits {
  /** Shadow reads whose rows differed, of those compared. */
  maxShadowMismatchRate: number;
  /** Shadow comparisons a step needs before its mismatch rate counts (0: none needed). */
  minShadowComparisons: number;
  /** Reads on new that failed, of all reads on new. */
  maxNewErrorRate: number;
  /** Mean read time on new over mean read time on old. */
  maxLatencyRatio: number;
  /** Change log entries and queued discrepancy keys not yet synced. */
  maxReconciliationBacklog: number;
  /** The query benchmark's worst p50 ratio new/old; null: reported, not a gate. */
  maxQueryRatio: number | null;
}

export const DEFAULT_GATES: GateLimits = {
  maxShadowMismatchRate: 0.001,
  minShadowComparisons: 0,
  maxNewErrorRate: 0.001,
  maxLatencyRatio: 2,
  maxReconciliationBacklog: 1000,
  maxQueryRatio: null,
};

export const DEFAULT_APPROVALS: ApprovalPoint[] = ['switched'];
/** How long each ramp step runs before its gates are read, in ms. */
export const DEFAULT_STEP_SOAK_MS = 10 * 60_000;
/** How long old stays read-only and reverse-synced after `complete` before it may be retired. */
export const DEFAULT_COMPLETION_SOAK_MS = 14 * 24 * 3600_000;
