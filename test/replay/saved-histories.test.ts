// Determinism: every saved history in test/histories replays against today's workflow code. A change
// that breaks replay of a running migration fails here; record new histories with
// `npm run histories:record` when a workflow changes on purpose (and patch the old path).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Worker } from '@temporalio/worker';
import { savedHistories, workflowsPath } from '../harness/workflow-histories';

describe('replay of saved workflow histories', () => {
  it('replays every saved history without a nondeterminism error', async () => {
    const histories = savedHistories();
    assert.ok(histories.length > 0, 'test/histories holds at least one history');
    for await (const result of Worker.runReplayHistories({ workflowsPath }, histories)) {
      assert.equal(result.error, undefined, `${result.workflowId}: ${String(result.error)}`);
    }
  });
});
