// The stages every router follows (DESIGN.md's stage table) and the state the stage store holds.

export const STAGES = ['off', 'dual_write', 'shadow', 'live', 'switched', 'complete'] as const;
export type Stage = (typeof STAGES)[number];

/**
 * Whether a write's mirror may land after the write answered the application: in `dual_write` and
 * `shadow` no read of the application goes to the side writes are mirrored to (a shadow read only
 * compares, after the mirrors before it landed), so nobody can read a mirror before it lands. From
 * `live` on reads go there, and a write waits for its mirror; so before a step whose reads go to new
 * follows one of these, the migration raises the write fence until every router's trailing mirrors
 * landed (workflows/migration/transitions.ts).
 */
export function mirrorsMayTrail(stage: Stage): boolean {
  return stage === 'dual_write' || stage === 'shadow';
}

export interface StageState {
  stage: Stage;
  /** Percentage of reads served by new in `live`. */
  readPercent: number;
  /** Grows by one with every change; 0 before the first. */
  version: number;
  /**
   * The write fence of a switch: routers hold new writes (they wait, they do not fail), finish the
   * ones in flight, then acknowledge this version. Lifted by the next stage change.
   */
  fenced: boolean;
}
