// Which failures heal by retrying and which do not. A lost connection, a server restarting, a
// deadlock or a lock timeout heals: the activity retries. A constraint violation, a missing column,
// a refused password or privilege does not: retried for ever it would only hide the cause. Those end
// the activity at once (non-retryable) with the table and the database's own words, so the workflow
// can hold the migration with the cause in view.
import { ApplicationFailure } from '@temporalio/common';
import { MigrationFault, SYNC_FAILED } from '../model/errors';
import type { KeyRange, TableRef } from '../model/tables';
import { quoteTable } from '../db/sql';
import { lastingType, type LastingType } from '../model/lasting-failures';

/** SQLSTATE classes and codes that a retry can heal. */
const TRANSIENT_CLASSES = new Set(['08', '40', '53', '57', '58']);
const TRANSIENT_CODES = new Set(['55P03', '55006']);
/** Node-level errors of a connection that broke or never came up. */
const TRANSIENT_NODE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** True when retrying may heal `err`; a fault or a non-retryable ApplicationFailure never does. */
export function isTransient(err: unknown): boolean {
  if (err instanceof MigrationFault) return false;
  if (err instanceof ApplicationFailure) return !err.nonRetryable;
  const state = sqlState(err);
  if (state !== undefined) return TRANSIENT_CLASSES.has(state.slice(0, 2)) || TRANSIENT_CODES.has(state);
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && TRANSIENT_NODE_CODES.has(code)) return true;
  const message = err instanceof Error ? err.message : String(err);
  // pg's own words for a connection that died or timed out.
  return /Connection terminated|timeout exceeded|connection timeout|Client has encountered a connection error/i.test(
    message,
  );
}

/** What the operator does about each failure retrying cannot heal. */
const FIX: Record<LastingType, string> = {
  AuthenticationFailed:
    "fix the worker's connection settings (OLD_DATABASE_URL, NEW_DATABASE_URL or their passwordEnv), restart the worker, then `migrate resume`",
  PermissionDenied:
    'grant the migration\'s role what it lacks (README: "Roles and grants"), then `migrate resume`',
  MissingObject:
    'a table, column, schema or database the migration uses is gone or renamed: restore it, then `migrate resume`',
  ConstraintViolation:
    'a constraint on the target refuses the rows (a foreign key to a table that is not migrated: migrate that table too, or add the key after the migration); mend the data or the constraint, then `migrate resume`',
};

/**
 * A database error retrying cannot heal (authentication, privilege, a missing relation or column,
 * a constraint) as the fault it is, with the database's words and the fix; undefined for anything
 * else (a retry may heal it, or it is a fault already).
 */
export function lastingFault(err: unknown, activity: string): MigrationFault | undefined {
  if (err instanceof MigrationFault || err instanceof ApplicationFailure) return undefined;
  const state = sqlState(err);
  if (state === undefined || isTransient(err)) return undefined;
  const type = lastingType(state);
  if (type === undefined) return undefined;
  const detail = (err as { detail?: unknown }).detail;
  const table = (err as { table?: unknown; schema?: unknown }).table;
  const schema = (err as { schema?: unknown }).schema;
  const message = err instanceof Error ? err.message : String(err);
  return new MigrationFault(
    type,
    `${activity} failed for a cause retrying cannot heal (SQLSTATE ${state}): ${message}${typeof detail === 'string' ? ` (${detail})` : ''}; ${FIX[type]}`,
    {
      ...(typeof table === 'string' && { table: typeof schema === 'string' ? `${schema}.${table}` : table }),
      sqlState: state,
    },
  );
}

/**
 * `err` as it should leave an activity that wrote `table`: unchanged when a retry may heal it (or it
 * already says it will not), else a non-retryable SyncFailed naming the table and the SQLSTATE.
 */
export function asActivityFailure(err: unknown, table: TableRef, side: string, range?: KeyRange): unknown {
  if (err instanceof MigrationFault || err instanceof ApplicationFailure || isTransient(err)) return err;
  const state = sqlState(err);
  const message = err instanceof Error ? err.message : String(err);
  const detail = (err as { detail?: unknown }).detail;
  const keys =
    range === undefined
      ? ''
      : ` in keys (${range.lower === null ? 'start' : range.lower.join(', ')}, ${range.upper.join(', ')}]`;
  const type = state === undefined ? undefined : lastingType(state);
  const fix = type === undefined ? undefined : FIX[type];
  return new MigrationFault(
    SYNC_FAILED,
    `syncing ${quoteTable(table)} into ${side}${keys} failed${state === undefined ? '' : ` (SQLSTATE ${state})`}: ${message}${typeof detail === 'string' ? ` (${detail})` : ''}${fix === undefined ? '' : `; ${fix}`}`,
    {
      table: `${table.schema}.${table.table}`,
      side,
      sqlState: state ?? null,
      ...(range !== undefined && { range }),
    },
  );
}
