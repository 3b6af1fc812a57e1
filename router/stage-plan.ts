// What each stage means for one statement (DESIGN.md's stage table): which side is authoritative
// (writes and transactions run there first), which side a write is mirrored to, where reads go, and
// whether a sample of reads is also compared on new. From `switched` on, old is guarded: only the
// migration's own role may write it (activities/write-guard.ts), so the router does not mirror there;
// reconciliation carries new's writes back to old (the reverse sync) from new's change log.
import type { ConnectionName } from '../model/connections';
import { mirrorsMayTrail, STAGES, type Stage } from '../model/stages';

export interface StagePlan {
  authoritative: ConnectionName;
  /** The side writes are mirrored to after the authoritative commit, or null. */
  mirrorTo: ConnectionName | null;
  /** Where reads go: one side, or new for the stage's read percentage. */
  reads: ConnectionName | 'percent';
  shadow: boolean;
  /** A write may answer before its mirror lands (model/stages.ts). */
  mirrorsMayTrail: boolean;
}

const ROUTES: Record<Stage, Omit<StagePlan, 'mirrorsMayTrail'>> = {
  off: { authoritative: 'old', mirrorTo: null, reads: 'old', shadow: false },
  dual_write: { authoritative: 'old', mirrorTo: 'new', reads: 'old', shadow: false },
  shadow: { authoritative: 'old', mirrorTo: 'new', reads: 'old', shadow: true },
  live: { authoritative: 'old', mirrorTo: 'new', reads: 'percent', shadow: false },
  switched: { authoritative: 'new', mirrorTo: null, reads: 'new', shadow: false },
  complete: { authoritative: 'new', mirrorTo: null, reads: 'new', shadow: false },
};

const PLANS = Object.fromEntries(
  STAGES.map((stage) => [stage, { ...ROUTES[stage], mirrorsMayTrail: mirrorsMayTrail(stage) }]),
) as Record<Stage, StagePlan>;

export function stagePlan(stage: Stage): StagePlan {
  return PLANS[stage];
}

/** The routing key's bucket, 0–99: stable across processes and restarts (FNV-1a of its text). */
export function routingBucket(routingKey: string | number): number {
  let hash = 0x811c9dc5;
  for (const char of String(routingKey)) {
    hash ^= char.codePointAt(0)!;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash % 100;
}

/**
 * Whether a read in `live` at `readPercent` goes to new. With a routing key the answer is sticky: a
 * key stays on new as the percentage grows. Without one, each read draws on its own.
 */
export function readsFromNew(
  readPercent: number,
  routingKey: string | number | undefined,
  random: () => number = Math.random,
): boolean {
  const bucket = routingKey === undefined ? Math.floor(random() * 100) : routingBucket(routingKey);
  return bucket < readPercent;
}
