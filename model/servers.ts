// Which databases a migration is bound to: each side's identity as recorded when it prepared, and
// how two identities differ. Plain data and pure functions (activities/server-identity.ts reads them
// from the servers and checks them).
import type { ConnectionName } from './connections';

export interface ServerIdentity {
  /**
   * The random id this database got the first time a migration met it (live_migrate.server_identity);
   * null for a database no migration has met.
   */
  id: string | null;
  /** pg_control_system()'s system identifier, or null when the role may not read it. */
  systemIdentifier: string | null;
  database: string;
  databaseOid: number;
  /** The role the migration connects as (session_user): the only one the write guard lets through. */
  role: string;
  /** Where this worker reached it (host, port and database; never a password), for messages. */
  label: string;
}

/** The identities of both sides, as recorded when the migration prepared. */
export type ServerBinding = Record<ConnectionName, ServerIdentity>;

export function describeIdentity(identity: ServerIdentity): string {
  const system = identity.systemIdentifier === null ? '' : `, system ${identity.systemIdentifier}`;
  const id = identity.id === null ? 'never met by a migration' : `id ${identity.id.slice(0, 8)}`;
  return `${identity.label} (database ${identity.database}, oid ${identity.databaseOid}${system}, ${id}, as role ${identity.role})`;
}

/** What differs between the recorded identity and the one seen now; empty when they are the same. */
export function identityDifferences(recorded: ServerIdentity, seen: ServerIdentity): string[] {
  const differences: string[] = [];
  if (recorded.id !== seen.id) differences.push('another database (its migration id differs)');
  else if (recorded.databaseOid !== seen.databaseOid) differences.push('another database oid');
  if (
    recorded.systemIdentifier !== null &&
    seen.systemIdentifier !== null &&
    recorded.systemIdentifier !== seen.systemIdentifier
  ) {
    differences.push('another server (its system identifier differs)');
  }
  if (recorded.role !== seen.role) {
    differences.push(
      `another role (${seen.role}, not ${recorded.role}: the write guard lets only ${recorded.role} through)`,
    );
  }
  return differences;
}
