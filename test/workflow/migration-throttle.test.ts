// `migrate throttle` in the migration workflow, in a time-skipping test server with fake activities:
// the row limit reaches the table backfill that runs now (the limit as set, not a partition's share),
// the status shows what was set, and invalid values are refused by the update's validator with the
// reason, changing nothing.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backfillProgressQuery, throttleUpdate } from '../../workflows/messages';
import { backfillingMigration, refusal } from '../harness/migration-workflow';
import { timeSkippingSuite } from '../harness/time-skipping';
import { waitFor } from '../harness/wait';

const { fakes, ts } = timeSkippingSuite('migration-throttle');

describe('the row limit an operator sets', () => {
  it('reaches the running backfill, shows in the status, and refuses invalid values', async () => {
    const { migration, planned, backfill } = await backfillingMigration(ts(), fakes, 'throttle-backfill', {
      readSteps: [25, 100],
      approvals: ['shadow'],
    });
    await waitFor('the backfill to start', () =>
      backfill.query(backfillProgressQuery).then(
        () => true,
        () => false,
      ),
    );

    for (const bad of [0, -1, 2.5, '100' as unknown as number]) {
      assert.match(
        await refusal(migration.handle.executeUpdate(throttleUpdate, { args: [{ maxRowsPerSecond: bad }] })),
        /^the row limit must be a whole number of rows per second from 1 to 1000000000, or off/,
      );
    }
    assert.equal((await migration.status()).maxRowsPerSecond, undefined, 'a refusal changes nothing');

    const set = await migration.handle.executeUpdate(throttleUpdate, {
      args: [{ maxRowsPerSecond: 800, by: 'ops' }],
    });
    assert.deepEqual(set, { maxRowsPerSecond: 800, backfillsTold: 1 });
    await waitFor(
      'the backfill to take the limit',
      async () => (await backfill.query(backfillProgressQuery)).maxRowsPerSecond === 800,
    );
    const status = await migration.status();
    assert.equal(status.maxRowsPerSecond, 800);
    assert.ok(status.events.some((event) => event.text === 'row limit set to 800 rows/s per table by ops'));

    await migration.handle.executeUpdate(throttleUpdate, { args: [{ maxRowsPerSecond: null }] });
    await waitFor(
      'the limit lifted',
      async () => (await backfill.query(backfillProgressQuery)).maxRowsPerSecond === null,
    );
    planned.open();
    const held = await migration.heldFor('approval', 'dual_write');
    assert.equal(held.maxRowsPerSecond, null);
  });
});
