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
  /**
   * Keys that still differed after the settle delay with no change of theirs pending in the change
   * log: damage, or a write that capture never saw. Reported, repaired (unless told not to), and a
   * migration holds on them.
   */
  differences: number;
  /** Keys that differed at first and agreed after the settle delay or once their pending change synced. */
  settled: number;
  /**
   * Keys that still differed when the check ended, with a change of theirs still pending in the
   * change log: writes in flight that reconciliation has yet to carry (its backlog and failures are
   * reported and gated on their own), not differences.
   */
  inFlight: number;
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
    inFlight: 0,
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
  total.inFlight += more.inFlight;
  total.repaired += more.repaired;
  addSampleKeys(total, more.sampleKeys);
}

export function addSampleKeys(total: VerificationCounts, keys: string[][]): void {
  for (const key of keys.slice(0, Math.max(0, SAMPLE_KEYS - total.sampleKeys.length)))
    total.sampleKeys.push(key);
}
