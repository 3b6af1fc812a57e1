// The change log's backlog on one side (live_migrate.change_log, written by capture): how many
// entries of a migration wait to be carried over and how old the oldest is. Read only; the syncer
// reports it after each batch, `migrate switch --dry-run` shows what the switch would drain.
import type pg from 'pg';
import { HELPER_SCHEMA } from './helper-schema';

/** Entries are counted up to this many (counting a huge log exactly would cost more than it tells). */
export const BACKLOG_COUNT_LIMIT = 1_000_000;

export interface ChangeLogBacklog {
  /** Entries of the migration in the log, counted up to BACKLOG_COUNT_LIMIT. */
  backlog: number;
  /** Age in seconds of the oldest entry; 0 when the log is empty. */
  lagSeconds: number;
}

export async function changeLogBacklog(pool: pg.Pool, migration: string): Promise<ChangeLogBacklog> {
  const { rows } = await pool.query<{ backlog: string; lag: number | null }>(
    `SELECT (SELECT count(*) FROM (SELECT 1 FROM ${HELPER_SCHEMA}.change_log WHERE migration = $2 LIMIT $1) AS c) AS backlog,
            extract(epoch FROM clock_timestamp() - (SELECT logged_at FROM ${HELPER_SCHEMA}.change_log WHERE migration = $2 ORDER BY id LIMIT 1))::float8 AS lag`,
    [BACKLOG_COUNT_LIMIT, migration],
  );
  return { backlog: Number(rows[0]?.backlog ?? 0), lagSeconds: Math.max(0, rows[0]?.lag ?? 0) };
}
