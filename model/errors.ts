// Errors as every layer raises them, with no Temporal in them: what an operator can fix (printed as
// one sentence, without a stack trace), and the faults retrying cannot heal. An activity that meets
// a fault fails at once, without retry, with the fault's type (activities/index.ts turns it into
// Temporal's non-retryable failure), so the workflow can hold the migration with the cause.

/** A problem the operator can fix; its message says what is wrong and what to do. */
export class OperatorError extends Error {
  override readonly name = 'OperatorError';
}

/** The kinds of fault, as the workflows and the operator see them. */
export const REFUSAL = 'MigrationRefused';
export const SCHEMA_CHANGED = 'SchemaChanged';
export const WRONG_SERVERS = 'WrongServers';
export const SYNC_FAILED = 'SyncFailed';

/** A failure that retrying cannot heal: a refusal, a schema change, the wrong servers, a constraint. */
export class MigrationFault extends Error {
  override readonly name = 'MigrationFault';

  constructor(
    /** REFUSAL, SCHEMA_CHANGED, WRONG_SERVERS, SYNC_FAILED. */
    readonly type: string,
    message: string,
    /** What it concerns, for the workflows: { table: 'schema.table', side, sqlState }. */
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}

/** Refuses what cannot be migrated safely, saying why (hazard 10). */
export function refuse(message: string): MigrationFault {
  return new MigrationFault(REFUSAL, message);
}
