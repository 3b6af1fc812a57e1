// What a failure comes down to, for a hold's reason and cause.
import { ActivityFailure, ApplicationFailure, ChildWorkflowFailure } from '@temporalio/workflow';

export interface FailureCause {
  message: string;
  code: string | null;
  table: string | null;
}

/**
 * The innermost application failure's words, type and table (a child workflow's activity's refusal,
 * say), or the error's own message.
 */
export function failureCause(err: unknown): FailureCause {
  let current: unknown = err;
  while (
    (current instanceof ChildWorkflowFailure || current instanceof ActivityFailure) &&
    current.cause !== undefined
  ) {
    current = current.cause;
  }
  if (current instanceof ApplicationFailure) {
    const details = current.details?.[0] as { table?: string } | undefined;
    return { message: current.message, code: current.type ?? null, table: details?.table ?? null };
  }
  return { message: current instanceof Error ? current.message : String(current), code: null, table: null };
}
