// The query benchmark's questions and answers: representative reads, and their latency on each
// side (activities/query-benchmark.ts runs them).

export interface BenchmarkQuery {
  name: string;
  sql: string;
  params?: unknown[];
}

export interface LatencyFigures {
  p50: number;
  p95: number;
}

export interface QueryBenchmarkResult {
  queries: Array<{
    name: string;
    fingerprint: string;
    old: LatencyFigures;
    new: LatencyFigures;
    /** new/old. */
    ratioP50: number;
    ratioP95: number;
  }>;
  /** Queries not run, and why (a write, no pg_stat_statements, a failure on one side). */
  skipped: Array<{ name: string; reason: string }>;
}
