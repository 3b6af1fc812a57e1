// The migration's own current details in the Web UI while it backfills (issue 14, item 3): a
// table's backfill reports how far it got (backfillCopiedSignal) and the migration's details show
// rows of the estimate, percent, rows/s, ETA and what the copy waits for, read back through the
// Temporal API as the Web UI reads them. A report for a table the migration does not move is ignored.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { backfillCopiedSignal } from '../../workflows/messages';
import { backfillingMigration } from '../harness/migration-workflow';
import { timeSkippingSuite } from '../harness/time-skipping';
import { waitFor } from '../harness/wait';

const { fakes, ts } = timeSkippingSuite('migration-details');

describe("the migration's current details", () => {
  it('show rows, rows/s and ETA of the backfill while it copies', async () => {
    const { migration, planned } = await backfillingMigration(ts(), fakes, 'details-backfill', {
      approvals: ['shadow'],
    });
    const details = async () =>
      (await migration.handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata'))
        .currentDetails ?? '';
    assert.match(
      await details(),
      /^details-backfill: dual_write, backfilling$/,
      'no figures before a report',
    );

    await migration.handle.signal(backfillCopiedSignal, {
      table: 'public.elsewhere',
      rowsCopied: 1,
      estimatedRows: 2,
      rowsPerSecond: 1,
      waitingFor: [],
    });
    await migration.handle.signal(backfillCopiedSignal, {
      table: 'public.orders',
      rowsCopied: 6000,
      estimatedRows: 30_000,
      rowsPerSecond: 1000,
      waitingFor: ['row rate limit 250 rows/s'],
    });
    const shown = await waitFor('the figures in the details', details, (text) => text.includes('rows/s'));
    assert.equal(
      shown,
      'details-backfill: dual_write, backfilling — public.orders: 6000 of ~30000 rows (20%), 1000 rows/s, ETA 24 s; throttled: row rate limit 250 rows/s',
    );
    planned.open();
    await migration.heldFor('approval', 'dual_write');
    assert.doesNotMatch(await details(), /rows\/s/, 'no backfill figures once it is done');
  });
});
