// `migrate status --watch` drawing (client/watch.ts) and the live table lines (client/live-status.ts):
// on a terminal each report replaces the last (ANSI home and clear) and a bar shows the percent;
// otherwise plain reports after a time stamp; the watch ends when the migration has ended.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { bar, tableLines, type LiveTableProgress } from '../../client/live-status';
import { watch } from '../../client/watch';

const copying: LiveTableProgress = {
  table: 'public.orders',
  estimatedRows: 1000,
  rowsCopied: 250,
  backfillDone: false,
  verification: null,
  percent: 25,
  verifying: null,
  backfill: {
    table: 'public.orders',
    phase: 'copying',
    paused: false,
    maxRowsPerSecond: 100,
    rowsCopied: 250,
    rowsRead: 250,
    chunksDone: 5,
    chunksInFlight: 2,
    estimatedRows: 1000,
    percent: 25,
    rowsPerSecond: 100,
    etaSeconds: 75,
    waitingFor: ['row rate limit 50 rows/s'],
    throttled: { rate: 3 },
    brake: {
      limit: 400,
      reason:
        'probe query p99 9 ms (100 runs) above its target 2 ms (2× baseline 0.4 ms): copy limited to 400 rows/s',
      baseline: { routersMs: null, probeMs: 0.4 },
      last: { by: 'probe', ms: 9, targetMs: 2 },
      decreases: 1,
      increases: 0,
    },
    brakeUnread: null,
    partitionsDone: 0,
    partitionsRunning: 2,
    partitions: [],
  },
};

describe('watching a migration', () => {
  it('redraws in place on a terminal, and stops once the migration has ended', async () => {
    const written: string[] = [];
    let reads = 0;
    await watch(() => Promise.resolve({ lines: [`report ${++reads}`], ended: reads === 3 }), {
      intervalMs: 1,
      tty: true,
      write: (text) => written.push(text),
    });
    assert.deepEqual(written, [
      '\u001b[H\u001b[2Jreport 1\n',
      '\u001b[H\u001b[2Jreport 2\n',
      '\u001b[H\u001b[2Jreport 3\n',
    ]);
  });

  it('prints plain reports after a time stamp elsewhere, and stops after --count', async () => {
    const written: string[] = [];
    await watch(() => Promise.resolve({ lines: ['a', 'b'], ended: false }), {
      intervalMs: 1,
      count: 2,
      tty: false,
      write: (text) => written.push(text),
    });
    assert.equal(written.length, 2);
    for (const text of written) assert.match(text, /^--- \d{4}-\d\d-\d\dT[\d:.]+Z\na\nb\n$/);
  });

  it('shows rows of the estimate, percent, rate, ETA, chunks and the throttle, with a bar on a terminal', () => {
    assert.deepEqual(tableLines(copying, true), [
      '  public.orders: [#####...............] 250 of ~1000 rows (25%), 100 rows/s, ETA 1 min 15 s; copying',
      '    chunks 5 done, 2 in flight; partitions 0 done, 2 running',
      '    throttle: waiting: row rate limit 50 rows/s (row limit 100 rows/s)',
      '    latency brake: probe query p99 9 ms (100 runs) above its target 2 ms (2× baseline 0.4 ms): copy limited to 400 rows/s (1 down, 0 up)',
      '    not verified yet',
    ]);
    // A brake whose baseline could not be read says so, and why.
    const unread =
      'could not read the application latency before the copy (the probe query failed: relation "gone" does not exist): copying without the latency brake';
    assert.ok(
      tableLines(
        { ...copying, backfill: { ...copying.backfill!, brake: null, brakeUnread: unread } },
        false,
      ).includes(`    latency brake: ${unread}`),
    );
    assert.equal(bar(null, 4), '[....]');
    assert.equal(bar(100, 4), '[####]');
  });
});
