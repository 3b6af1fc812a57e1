// The row rate limit as a token bucket: pure arithmetic on (level, time), so the workflow can keep it
// deterministically (workflow time) and tests can drive it with any clock.
//
// The bucket fills at `rate` rows per second up to `capacity` (one second's worth by default), never
// beyond: a stall (Temporal down, the source restarting, a pause, a worker gone) earns no credit to
// spend later. A batch of rows may start whenever the level is not negative, and takes its rows at
// once (the level may go below zero); the next batch waits until the bucket has paid that back. So in
// any window of T seconds at most `capacity + rate × T + one batch` rows start, however long the
// stall before it was.

export interface TokenBucket {
  /** Rows that may start now; negative while a batch that started is being paid back. */
  level: number;
  /** When `level` was last brought up to date, in ms. */
  at: number;
}

/** One second's worth of rows, and never less than one row. */
export function bucketCapacity(rowsPerSecond: number): number {
  return Math.max(1, rowsPerSecond);
}

/** A bucket that may start one second's worth of rows at once. */
export function fullBucket(rowsPerSecond: number, now: number): TokenBucket {
  return { level: bucketCapacity(rowsPerSecond), at: now };
}

/** The bucket at `now`: filled by the time since, up to its capacity. */
export function refill(bucket: TokenBucket, rowsPerSecond: number, now: number): TokenBucket {
  const elapsed = Math.max(0, now - bucket.at);
  const level = Math.min(bucketCapacity(rowsPerSecond), bucket.level + (elapsed / 1000) * rowsPerSecond);
  return { level, at: Math.max(now, bucket.at) };
}

/** How long, in ms from `now`, until a batch may start (0: at once). */
export function waitBeforeBatch(bucket: TokenBucket, rowsPerSecond: number, now: number): number {
  const current = refill(bucket, rowsPerSecond, now);
  return current.level >= 0 ? 0 : Math.ceil((-current.level / rowsPerSecond) * 1000);
}

/** The bucket after a batch of `rows` started at `now` (call once waitBeforeBatch is 0). */
export function takeBatch(
  bucket: TokenBucket,
  rowsPerSecond: number,
  rows: number,
  now: number,
): TokenBucket {
  const current = refill(bucket, rowsPerSecond, now);
  return { level: current.level - rows, at: current.at };
}

/** Gives back rows a batch took but did not read (a short last chunk, a hot-rows predicate). */
export function refund(bucket: TokenBucket, rowsPerSecond: number, rows: number): TokenBucket {
  return { level: Math.min(bucketCapacity(rowsPerSecond), bucket.level + Math.max(0, rows)), at: bucket.at };
}

/**
 * Chunks per activity under a row limit: about one second's worth of the rate, at least one chunk,
 * at most `chunksPerActivity`; without a limit, `chunksPerActivity`. Keeps a batch, and so the burst
 * a batch may make, small next to the rate.
 */
export function chunksPerBatch(
  rowsPerSecond: number | null,
  chunkSize: number,
  chunksPerActivity: number,
): number {
  if (rowsPerSecond === null || rowsPerSecond <= 0) return chunksPerActivity;
  return Math.max(1, Math.min(chunksPerActivity, Math.floor(rowsPerSecond / chunkSize)));
}
