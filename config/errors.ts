// Errors meant for an operator: one actionable sentence, printed without a stack trace.

/** A problem the operator can fix; its message says what is wrong and what to do. */
export class OperatorError extends Error {
  override readonly name = 'OperatorError';
}
