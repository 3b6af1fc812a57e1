// What the write load's main side (write-load.ts) and its thread (write-load-thread.ts) tell each
// other: the thread's settings, the messages both ways, and the phase in which it writes nothing.

/** The phase in which the load writes nothing: an idle application. */
export const PAUSED_PHASE = 'paused';

export interface WriteLoadThreadData {
  url: string;
  /** Quoted schema-qualified table name. */
  table: string;
  /** Seeded keys are `g * keyStep` for g in 1..seededRows. */
  seededRows: number;
  keyStep: number;
  rate: number;
  clients: number;
}

export type ToLoadThread = { type: 'phase'; phase: string } | { type: 'stop' };
export type FromLoadThread =
  /** `osThreadId`: the thread's id in the OS (Linux), to pin it to a CPU. */
  | { type: 'ready'; osThreadId?: number }
  | { type: 'failed'; message: string }
  | {
      type: 'done';
      latencies: Record<string, number[]>;
      /** When each write of `latencies` ended, in ms since the epoch (threads' clocks differ). */
      endedAt: Record<string, number[]>;
      /** How long the load's thread waited for a CPU during each write of `latencies`, in ms. */
      ownCpuWaits: Record<string, number[]>;
      errors: Record<string, number>;
      lastError?: string;
    };
