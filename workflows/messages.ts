// Signals, queries and updates, defined once and imported by workflows and the client alike.
import { defineQuery } from '@temporalio/workflow';

export interface BackfillProgress {
  table: string;
  rowsCopied: number;
  chunksDone: number;
  lastKey: string[] | null;
  done: boolean;
}

export const backfillProgressQuery = defineQuery<BackfillProgress>('backfillProgress');
