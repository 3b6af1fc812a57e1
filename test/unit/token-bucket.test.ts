// The row limit's token bucket (model/token-bucket.ts), on a simulated clock: a source that copies
// as fast as it is let keeps to the limit, in steady state, across partitions, and right after a
// stall of any length (the old limit, an average since the start, let a stall's whole allowance out
// at once).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  bucketCapacity,
  chunksPerBatch,
  fullBucket,
  refill,
  refund,
  takeBatch,
  waitBeforeBatch,
  type TokenBucket,
} from '../../model/token-bucket';

interface Start {
  at: number;
  rows: number;
}

/**
 * Partitions that each start a batch of `rows` whenever their bucket lets them, with `copyMs` per
 * batch and `slots` batches in flight, from `from` to `until` ms; returns every batch start.
 */
function simulate(options: {
  rate: number;
  partitions: number;
  rows: number;
  from: number;
  until: number;
  copyMs: number;
  buckets?: TokenBucket[];
}): { starts: Start[]; buckets: TokenBucket[] } {
  const share = options.rate / options.partitions;
  const buckets =
    options.buckets ?? Array.from({ length: options.partitions }, () => fullBucket(share, options.from));
  const starts: Start[] = [];
  buckets.forEach((initial, p) => {
    let bucket = initial;
    let now = options.from;
    for (;;) {
      now += waitBeforeBatch(bucket, share, now);
      if (now >= options.until) break;
      bucket = takeBatch(bucket, share, options.rows, now);
      starts.push({ at: now, rows: options.rows });
      now += options.copyMs;
    }
    buckets[p] = bucket;
  });
  return { starts, buckets };
}

/** The most rows started in any window of `windowMs`. */
function peak(starts: Start[], windowMs: number): number {
  const sorted = [...starts].sort((a, b) => a.at - b.at);
  let best = 0;
  for (let i = 0; i < sorted.length; i++) {
    let rows = 0;
    for (let j = i; j < sorted.length && sorted[j]!.at < sorted[i]!.at + windowMs; j++)
      rows += sorted[j]!.rows;
    best = Math.max(best, rows);
  }
  return best;
}

describe('token bucket', () => {
  it('keeps a fast source at the limit over a minute, and uses it', () => {
    const rate = 2500;
    const rows = chunksPerBatch(rate / 4, 500, 8) * 500;
    const { starts } = simulate({ rate, partitions: 4, rows, from: 0, until: 60_000, copyMs: 1 });
    const total = starts.reduce((sum, start) => sum + start.rows, 0);
    // At most the rate plus each partition's one second and one batch; at least the rate less a batch each.
    assert.ok(total <= rate * 60 + 4 * (bucketCapacity(rate / 4) + rows), `${total} rows in 60 s`);
    assert.ok(total >= rate * 60 - 4 * rows, `${total} rows in 60 s`);
    const windowMs = 5000;
    const burst = 4 * (bucketCapacity(rate / 4) + rows);
    assert.ok(peak(starts, windowMs) <= (rate * windowMs) / 1000 + burst, `peak ${peak(starts, windowMs)}`);
  });

  it('earns no burst from a stall: after 10 minutes idle, the next 5 s start as many rows as any 5 s', () => {
    const rate = 3000;
    const partitions = 4;
    const rows = chunksPerBatch(rate / partitions, 1000, 8) * 1000;
    const before = simulate({ rate, partitions, rows, from: 0, until: 20_000, copyMs: 1 });
    // The stall: nothing runs for ten minutes (Temporal down, the source restarting, a worker gone).
    const resumeAt = 20_000 + 600_000;
    const after = simulate({
      rate,
      partitions,
      rows,
      from: resumeAt,
      until: resumeAt + 30_000,
      copyMs: 1,
      buckets: before.buckets,
    });
    const windowMs = 5000;
    const firstWindow = after.starts
      .filter((start) => start.at < resumeAt + windowMs)
      .reduce((sum, start) => sum + start.rows, 0);
    const bound = (rate * windowMs) / 1000 + partitions * (bucketCapacity(rate / partitions) + rows);
    assert.ok(firstWindow <= bound, `${firstWindow} rows in the 5 s after the stall; bound ${bound}`);
    // The old limit (rows allowed = rate × time since start) would have allowed the whole stall's worth.
    const oldAllowance = (rate * (resumeAt + windowMs)) / 1000 - before.starts.length * rows;
    assert.ok(oldAllowance > 10 * bound, 'the stall is long enough to tell the two apart');
    assert.ok(peak(after.starts, windowMs) <= bound);
  });

  it('refills only up to one second of the rate; refunds are capped too; a batch waits out its debt', () => {
    const bucket = fullBucket(1000, 0);
    assert.equal(refill(bucket, 1000, 3_600_000).level, 1000);
    const owing = takeBatch(bucket, 1000, 4000, 0);
    assert.equal(owing.level, -3000);
    assert.equal(waitBeforeBatch(owing, 1000, 0), 3000);
    assert.equal(waitBeforeBatch(owing, 1000, 2000), 1000);
    assert.equal(waitBeforeBatch(owing, 1000, 3000), 0);
    assert.equal(refund(owing, 1000, 10_000).level, 1000);
    assert.equal(bucketCapacity(0.5), 1);
  });

  it('batches about a second of the limit, between one chunk and chunksPerActivity', () => {
    assert.equal(chunksPerBatch(null, 1000, 8), 8);
    assert.equal(chunksPerBatch(625, 1000, 8), 1);
    assert.equal(chunksPerBatch(2500, 500, 8), 5);
    assert.equal(chunksPerBatch(1_000_000, 1000, 8), 8);
  });
});
