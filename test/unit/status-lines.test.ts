// `migrate status`'s text: a paused migration reads "paused" once (issue 13, item 6), and an activity
// retrying reads with what, where, since when, its attempt and its last error (issue 13, item 1).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatMigrationStatus } from '../../client/migrations';
import { formatRetrying } from '../../client/retrying';
import type { MigrationStatus } from '../../model/messages';
import { migrationInputFor } from '../../config/migration-input';
import { parseMigrationConfig } from '../../config/load';
import { initialMemory } from '../../workflows/migration/state';

/** A new migration's status, at dual_write in `phase`. */
function statusOf(phase: MigrationStatus['phase'], paused: boolean): MigrationStatus {
  const input = migrationInputFor(parseMigrationConfig({ name: 'orders', tables: ['public.orders'] }));
  return { ...initialMemory(input).status, step: 'dual_write', phase, paused };
}

describe('migrate status lines', () => {
  it('a paused step says paused once', () => {
    assert.equal(formatMigrationStatus(statusOf('paused', true))[0], 'migration orders: dual_write — paused');
    assert.equal(
      formatMigrationStatus(statusOf('backfilling', true))[0],
      'migration orders: dual_write — backfilling (paused)',
    );
  });

  it('an activity retrying: what, where, since when, the attempt, the next try and the last error', () => {
    const lines = formatRetrying([
      {
        workflowId: 'migration-orders/backfill-public.orders/main-1',
        activity: 'copyChunks',
        attempt: 4,
        since: Date.UTC(2026, 0, 2, 3, 4, 5),
        lastError: 'connect ECONNREFUSED 10.0.0.5:5432',
        nextAttemptAt: Date.UTC(2026, 0, 2, 3, 5, 0),
      },
    ]);
    assert.deepEqual(lines, [
      '  retrying: copyChunks in migration-orders/backfill-public.orders/main-1 since 2026-01-02T03:04:05.000Z, attempt 4, next try at 2026-01-02T03:05:00.000Z; last error: connect ECONNREFUSED 10.0.0.5:5432',
    ]);
  });
});
