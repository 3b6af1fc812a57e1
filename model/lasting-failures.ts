// Which database failures retrying cannot heal, by SQLSTATE, and which failure codes only an operator
// can mend: shared by the activities that raise them and the workflows that hold for them.

export type LastingType =
  'AuthenticationFailed' | 'PermissionDenied' | 'MissingObject' | 'ConstraintViolation';

/**
 * Lasting kinds that wait for an operator wherever they come from. A constraint is not one of them:
 * in reconciliation it can clear as the rows change (a key taken on one side is freed), so it holds
 * as `sync` there and ends by itself; a chunk of the backfill that meets one holds as `failure`.
 */
const OPERATOR_TYPES: string[] = ['AuthenticationFailed', 'PermissionDenied', 'MissingObject'];
const MISSING_OBJECT_STATES = ['42P01', '42703', '3F000', '3D000', '42883', '42704'];

/** The kind of a failure retrying cannot heal, by its SQLSTATE; undefined when a retry may heal it. */
export function lastingType(state: string): LastingType | undefined {
  if (state.startsWith('28')) return 'AuthenticationFailed';
  if (state === '42501') return 'PermissionDenied';
  if (MISSING_OBJECT_STATES.includes(state)) return 'MissingObject';
  if (state.startsWith('23')) return 'ConstraintViolation';
  return undefined;
}

/** The migration's own faults that only an operator can mend. */
const OPERATOR_FAULTS = ['SchemaChanged', 'WrongServers', 'MigrationRefused'];

/**
 * True when a failure with this code (a fault's type or a SQLSTATE) waits for an operator, whose
 * cause no retry and no change of the rows mends: it holds at once and stays held until `resume`.
 */
export function needsOperator(code: string | null): boolean {
  if (code === null) return false;
  const type = lastingType(code) ?? code;
  return OPERATOR_FAULTS.includes(code) || OPERATOR_TYPES.includes(type);
}
