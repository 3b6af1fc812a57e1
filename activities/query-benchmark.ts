// The query benchmark: representative read queries run on both sides, so a cutover can see whether
// new answers the application's queries about as fast as old before reads move there. Queries come
// from the config, or from the top statements of pg_stat_statements on old when the extension is
// there (only those that need no parameters). Only statements that provably read run (the router's
// classifier decides), each inside a READ ONLY transaction with a statement timeout; the two sides
// take turns, so drift on the machine hits both alike. Reports p50/p95 per query and side and the
// ratios new/old. Old is the application's database while this runs: after each run the benchmark
// waits as long as the run took (a query that scans a table keeps a core of old busy at most half
// the time), and it beats after every run (a slow query's 40 runs outlast a heartbeat timeout).
import { setTimeout as sleep } from 'node:timers/promises';
import { Context } from '@temporalio/activity';
import type pg from 'pg';
import { classifyStatement } from '../db/classify';
import { statementInfo } from '../db/statement-info';
import type { BenchmarkQuery, LatencyFigures, QueryBenchmarkResult } from '../model/query-benchmark';
import type { NamedPools } from '../db/pools';
import type { ServerBinding } from '../model/servers';

export interface QueryBenchmarkInput {
  servers: ServerBinding;
  queries: BenchmarkQuery[];
  /** Also take this many of old's top statements (by total time) from pg_stat_statements (default 0). */
  topStatements?: number;
  /** Runs per query and side (default 20). */
  runs?: number;
  /** Per statement, in ms (default 5000). */
  statementTimeoutMs?: number;
}

/** After each run the benchmark waits this many times as long as the run took. */
export const PAUSE_PER_RUN = 1;

function figures(latencies: number[]): LatencyFigures {
  const sorted = [...latencies].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
  return { p50: at(0.5), p95: at(0.95) };
}

async function timedRead(pool: pg.Pool, query: BenchmarkQuery, timeoutMs: number): Promise<number> {
  const client = await pool.connect();
  try {
    await client.query(`BEGIN READ ONLY; SET LOCAL statement_timeout = ${Math.floor(timeoutMs)}`);
    const started = process.hrtime.bigint();
    await client.query(query.sql, query.params);
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    await client.query('ROLLBACK');
    client.release();
    return ms;
  } catch (err) {
    client.release(err as Error);
    throw err;
  }
}

async function topStatements(pool: pg.Pool, limit: number): Promise<BenchmarkQuery[] | string> {
  try {
    const { rows } = await pool.query<{ query: string }>(
      `SELECT query FROM pg_stat_statements
        WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
          AND query !~ '\\$[0-9]'
        ORDER BY total_exec_time DESC LIMIT $1`,
      [limit * 4],
    );
    return rows
      .filter((row) => classifyStatement(row.query).kind === 'read')
      .slice(0, limit)
      .map((row) => ({ name: `top: ${statementInfo(row.query).fingerprint}`, sql: row.query }));
  } catch (err) {
    return `pg_stat_statements is not available on old (${(err as Error).message})`;
  }
}

export function createQueryBenchmark(pools: NamedPools) {
  return {
    benchmarkQueries: async (input: QueryBenchmarkInput): Promise<QueryBenchmarkResult> => {
      const result: QueryBenchmarkResult = { queries: [], skipped: [] };
      const queries = [...input.queries];
      if ((input.topStatements ?? 0) > 0) {
        const top = await topStatements(pools.get('old'), input.topStatements!);
        if (typeof top === 'string') result.skipped.push({ name: 'top statements', reason: top });
        else queries.push(...top);
      }
      const runs = input.runs ?? 20;
      const timeoutMs = input.statementTimeoutMs ?? 5000;
      for (const query of queries) {
        const classified = classifyStatement(query.sql);
        if (classified.kind !== 'read') {
          result.skipped.push({
            name: query.name,
            reason: `not a read (${classified.reason}); it is never run`,
          });
          continue;
        }
        const latencies = { old: [] as number[], new: [] as number[] };
        try {
          // One run each first, untimed: connections and plan caches warm on both sides alike.
          for (const side of ['old', 'new'] as const) await timedRead(pools.get(side), query, timeoutMs);
          for (let run = 0; run < runs; run++) {
            for (const side of run % 2 === 0 ? (['old', 'new'] as const) : (['new', 'old'] as const)) {
              const ms = await timedRead(pools.get(side), query, timeoutMs);
              latencies[side].push(ms);
              Context.current().heartbeat({ query: query.name, side, ms });
              await sleep(ms * PAUSE_PER_RUN);
            }
          }
        } catch (err) {
          result.skipped.push({ name: query.name, reason: `failed: ${(err as Error).message}` });
          continue;
        }
        const old = figures(latencies.old);
        const onNew = figures(latencies.new);
        result.queries.push({
          name: query.name,
          fingerprint: statementInfo(query.sql).fingerprint,
          old,
          new: onNew,
          ratioP50: old.p50 > 0 ? onNew.p50 / old.p50 : 1,
          ratioP95: old.p95 > 0 ? onNew.p95 / old.p95 : 1,
        });
      }
      return result;
    },
  };
}
