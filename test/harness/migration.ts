// For migration tests: wait until the migration's status shows a state, never for a duration. A
// migration that failed on the way never matches.
import type { MigrationControl } from '../../client/migrations';
import type { MigrationStatus } from '../../model/messages';
import { waitFor } from './wait';

export function waitForMigration(
  control: MigrationControl,
  what: string,
  ok: (status: MigrationStatus) => boolean,
  attempts = 600,
): Promise<MigrationStatus> {
  return waitFor(
    what,
    () => control.status(),
    (status) => status.error === null && ok(status),
    attempts,
  );
}
