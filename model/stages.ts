// The stages every router follows (DESIGN.md's stage table) and the state the stage store holds.

export const STAGES = ['off', 'dual_write', 'shadow', 'live', 'switched', 'complete'] as const;
export type Stage = (typeof STAGES)[number];

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
