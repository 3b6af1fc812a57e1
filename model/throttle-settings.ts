// The backfill's tuning and throttle settings and their defaults: plain data, shared by the config schema and
// the workflow (this module imports only other plain data, so both may use it).
import type { LatencyTarget } from './latency-throttle';

export interface ThrottleSettings {
  /** Rows per second for the whole table (shared by its partitions); null = no limit. */
  maxRowsPerSecond?: number | null;
  /** Median of a few `SELECT 1` round trips above this many milliseconds means the source is busy. */
  maxProbeLatencyMs?: number | null;
  /** More active client sessions than this (ours excluded) means the source is busy. */
  maxActiveConnections?: number | null;
  /** Any replica further behind than this many seconds (pg_stat_replication) means wait. */
  maxReplicaLagSeconds?: number | null;
  /** How often the source's health is checked while copying, in ms. */
  checkIntervalMs?: number;
  /** How long to wait before checking again once the source is hurting, in ms. */
  backoffMs?: number;
  /**
   * The brake that follows the application's latency (model/latency-throttle.ts); null switches it
   * off, a field left out takes its default.
   */
  latencyTarget?: Partial<LatencyTarget> | null;
  /** After each batch of chunks, a partition rests this fraction of the batch's time (gh-ost's nice-ratio). */
  niceRatio?: number;
}

/** Defaults: wait for a busy source; no row rate limit unless the operator sets one. */
export const DEFAULT_THROTTLE = {
  maxRowsPerSecond: null as number | null,
  maxProbeLatencyMs: 50 as number | null,
  maxActiveConnections: 64 as number | null,
  maxReplicaLagSeconds: 10 as number | null,
  checkIntervalMs: 1000,
  backoffMs: 2000,
  niceRatio: 0,
};

/** Key ranges of a table copied side by side, each a child workflow (fewer for small tables). */
export const DEFAULT_PARTITIONS = 4;
/** Chunk activities in flight per partition. */
export const DEFAULT_CHUNKS_IN_FLIGHT = 2;
/**
 * Consecutive chunks one activity copies. Each chunk still commits with its own done-marker (the
 * checkpoint); batching only spares Temporal the activity round trips. Measured (`npm run bench`,
 * CPU seconds per million rows): an activity costs the Temporal server and the worker together
 * about as much CPU as copying 1000 rows; at 8 chunks an activity the Temporal server took about
 * 12 % of the backfill's CPU, at 32 about 7 %. The price: a pause or a busy source is obeyed once
 * the activities in flight finish their chunks (32 chunks of 1000 rows: a few seconds); under a row
 * limit an activity takes about one second of it whatever this says.
 */
export const DEFAULT_CHUNKS_PER_ACTIVITY = 32;
