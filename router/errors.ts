// The errors the router raises itself, typed by a code an application can branch on. A database
// error of the application's own statement is never one of these: it reaches the application as
// pg raised it (its code, message and hint unchanged).

import { redactError, redactSecrets } from '../model/redact';

/**
 * - `BAD_OPTIONS`: createRouter was given settings it cannot work with.
 * - `BAD_QUERY`: `query` was called with neither SQL text nor a query config with `text`.
 * - `OLD_UNREADABLE`: the router could not read the migration's stage on old, so it did not start.
 * - `FENCE_TIMEOUT`: a write waited `fenceWaitMs` for the write switch's fence to lift.
 */
export type RouterErrorCode = 'BAD_OPTIONS' | 'BAD_QUERY' | 'OLD_UNREADABLE' | 'FENCE_TIMEOUT';

export class RouterError extends Error {
  override readonly name = 'RouterError';

  constructor(
    readonly code: RouterErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    // Never a password: not in the message, and not in the cause (Node's and pg's errors may carry
    // the connection string in a field of their own).
    super(
      redactSecrets(message),
      options?.cause === undefined ? undefined : { cause: redactError(options.cause) },
    );
  }
}
