// `migrate throttle` in the migration workflow, in a time-skipping test server with fake activities:
// the row limit reaches the table backfill that runs now (the limit as set, not a partition's share),
// the status shows what was set, and invalid values are refused by the update's validator with the
// reason, changing nothing. Verification takes the same throttle: under a row limit each activity
// compares about a second of it, a new limit or a nice ratio reaches it while it runs, and it waits
// while old is busy.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backfillProgressQuery, throttleSignal, throttleUpdate, tuneSignal } from '../../workflows/messages';
import { verificationWorkflow } from '../../workflows/verification';
import { noCounts } from '../../model/verification-counts';
import { SERVERS } from '../harness/fake-activities';
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

describe('verification under the throttle', () => {
  it('compares about a second of the row limit per activity, takes a new limit and a nice ratio, and waits while old is busy', async () => {
    let calls = 0;
    let busy = 2;
    fakes.on('checkSourceHealth', () => ({
      reason: busy-- > 0 ? 'source latency probe 80 ms > 50 ms' : null,
      probeLatencyMs: 1,
      activeConnections: 0,
      replicaLagSeconds: 0,
    }));
    const nextLimit = fakes.gate();
    fakes.on('verifyRange', async (input) => {
      calls += 1;
      if (calls === 3) await nextLimit.opened;
      const rows = input.chunkSize * input.maxChunks;
      return {
        ...noCounts(),
        rowsFrom: rows,
        rowsTo: rows,
        chunks: input.maxChunks,
        reached: [String(calls * rows)],
        done: calls >= 6,
      };
    });
    const handle = await ts().env.client.workflow.start(verificationWorkflow, {
      taskQueue: ts().taskQueue,
      workflowId: 'verify-throttled',
      args: [
        {
          migration: 'throttled',
          servers: SERVERS,
          table: { schema: 'public', table: 'orders' },
          from: 'old',
          to: 'new',
          chunkSize: 500,
          partitions: 1,
          throttle: { maxRowsPerSecond: 2000 },
        },
      ],
    });
    await waitFor('the third comparison', () => Promise.resolve(calls >= 3));
    await handle.signal(throttleSignal, { maxRowsPerSecond: 5000 });
    await handle.signal(tuneSignal, { niceRatio: 1 });
    nextLimit.open();
    const report = await handle.result();
    assert.equal(report.phase, 'done');
    // 2,000 rows/s of 500-row chunks: 4 chunks an activity; then 5,000 rows/s: 10.
    assert.deepEqual(
      fakes.inputs('verifyRange').map((input) => input.maxChunks),
      [4, 4, 4, 10, 10, 10],
    );
    assert.ok(fakes.called('checkSourceHealth').length >= 3, 'waited while old was busy, checking again');
    const history = await handle.fetchHistory();
    const timers = history.events?.filter((event) => event.timerStartedEventAttributes != null).length ?? 0;
    assert.ok(timers > 0, 'waits are durable timers');
  });
});
