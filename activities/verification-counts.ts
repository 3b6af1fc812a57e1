// What verification counts, for one activity's chunks (range-verifier.ts) and for a whole table
// (workflows/verification.ts): one shape, one zero, one way to add. Plain data and pure functions,
// so the workflow bundle can use them too.

/** Differing keys kept as samples, per activity and per table. */
export const SAMPLE_KEYS = 10;

export interface VerificationCounts {
  /** Rows compared on the authoritative side, and rows found on the other side in the same chunks. */
  rowsFrom: number;
  rowsTo: number;
  chunks: number;
  /** Chunks whose checksums differed and were compared row by row. */
  mismatchedChunks: number;
  /** Keys that differed, and still differed after the settle delay. */
  differences: number;
  /** Keys that differed at first and agreed after the settle delay (writes in flight). */
  settled: number;
  repaired: number;
  /** Up to SAMPLE_KEYS differing keys, as text. */
  sampleKeys: string[][];
}

export function noCounts(): VerificationCounts {
  return {
    rowsFrom: 0,
    rowsTo: 0,
    chunks: 0,
    mismatchedChunks: 0,
    differences: 0,
    settled: 0,
    repaired: 0,
    sampleKeys: [],
  };
}

/** Adds `more` into `total`, keeping at most SAMPLE_KEYS sample keys. */
export function addCounts(total: VerificationCounts, more: VerificationCounts): void {
  total.rowsFrom += more.rowsFrom;
  total.rowsTo += more.rowsTo;
  total.chunks += more.chunks;
  total.mismatchedChunks += more.mismatchedChunks;
  total.differences += more.differences;
  total.settled += more.settled;
  total.repaired += more.repaired;
  addSampleKeys(total, more.sampleKeys);
}

export function addSampleKeys(total: VerificationCounts, keys: string[][]): void {
  for (const key of keys.slice(0, Math.max(0, SAMPLE_KEYS - total.sampleKeys.length)))
    total.sampleKeys.push(key);
}
