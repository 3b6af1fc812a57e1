// The fields an activity's log lines carry (worker/activity-log-attributes.ts): the migration and
// the table of its input, the table as `schema.table` whether the input names it as a TableRef or
// as text; nothing for an input without them.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { activityLogFields } from '../../worker/activity-log-attributes';

describe('activity log fields', () => {
  it('reads migration and table from the first argument', () => {
    assert.deepEqual(
      activityLogFields([{ migration: 'orders', table: { schema: 'public', table: 'orders' }, ranges: [] }]),
      { migration: 'orders', table: 'public.orders' },
    );
    assert.deepEqual(activityLogFields([{ migration: 'orders', table: 'public.orders' }]), {
      migration: 'orders',
      table: 'public.orders',
    });
    assert.deepEqual(activityLogFields([{ migration: 'orders', tables: [] }]), { migration: 'orders' });
  });

  it('gives nothing for an input without them', () => {
    assert.deepEqual(activityLogFields([]), {});
    assert.deepEqual(activityLogFields(['text']), {});
    assert.deepEqual(activityLogFields([{ workflowId: 'x', table: { name: 'odd' } }]), {});
  });
});
