// Determinism across releases: every saved history of every released shape of the workflows
// (test/histories/<day>/) replays against today's workflow code. A change that would break a
// migration started under an earlier release (one that runs for weeks across deploys) fails here:
// put it behind `patched()`, and record the new shape with `npm run histories:record` (a new folder;
// the old ones stay).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Worker } from '@temporalio/worker';
import { savedHistories, workflowsPath } from '../harness/workflow-histories';

describe('replay of saved workflow histories', () => {
  it('replays every saved history without a nondeterminism error', async () => {
    const histories = savedHistories();
    assert.ok(histories.length > 0, 'test/histories holds at least one history');
    const releases = new Set(histories.map((saved) => saved.release));
    for await (const result of Worker.runReplayHistories({ workflowsPath }, histories)) {
      assert.equal(result.error, undefined, `${result.workflowId}: ${String(result.error)}`);
    }
    console.log(
      `replayed ${histories.length} histories of ${releases.size} released shapes: ${[...releases].join(', ')}`,
    );
  });
});
