// The latency brake's probe leaves out of each run the time its own thread waited for a CPU
// (latency-probe-thread.ts): the arithmetic, and, on Linux, that the thread's wait is read and grows
// while more processes than cores want to run.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { describe, it } from 'node:test';
import { cpuWaitNs, runTime } from '../../activities/thread-cpu-wait';

describe('the probe’s own wait for a CPU', () => {
  it('is left out of the run’s time, never below zero, and nothing is left out without readings', () => {
    assert.deepEqual(runTime(5_000_000n, 1_000n, 3_001_000n), { ms: 2, waitedMs: 3 });
    assert.deepEqual(runTime(5_000_000n, 0n, 9_000_000n), { ms: 0, waitedMs: 5 });
    assert.deepEqual(runTime(5_000_000n, undefined, 9_000_000n), { ms: 5, waitedMs: 0 });
    assert.deepEqual(runTime(5_000_000n, 9_000_000n, undefined), { ms: 5, waitedMs: 0 });
    assert.deepEqual(runTime(5_000_000n, 9_000_000n, 1_000n), { ms: 5, waitedMs: 0 });
  });

  it('is read from the thread’s schedstat on Linux, and grows while the cores are oversubscribed', async (t) => {
    if (process.platform !== 'linux') return t.skip('Linux only');
    const before = cpuWaitNs();
    if (before === undefined) return t.skip('this kernel does not publish schedstat');
    // Twice as many busy processes as cores, while this thread keeps busy too: it must queue.
    const hogs = Array.from({ length: 2 * availableParallelism() }, () =>
      spawn(process.execPath, ['-e', 'for (;;) {}'], { stdio: 'ignore' }),
    );
    try {
      await new Promise((resolve) => setTimeout(resolve, 100));
      let after = cpuWaitNs()!;
      for (let spins = 0; after === before && spins < 50; spins++) {
        const until = Date.now() + 100;
        while (Date.now() < until) {
          // busy, competing with the hogs for a core
        }
        after = cpuWaitNs()!;
      }
      assert.ok(after > before, `the thread's wait for a CPU grew (${before} → ${after} ns)`);
    } finally {
      for (const hog of hogs) hog.kill('SIGKILL');
    }
  });
});
