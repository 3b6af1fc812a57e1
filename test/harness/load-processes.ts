// Starts router-load-process.ts as separate application processes and collects their reports, and
// checks that every write they were told succeeded is on a side exactly once.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type pg from 'pg';
import type { LoadWriterReport } from './router-load-process';

export interface LoadProcess {
  routerId: string;
  /** Stops the load, waits for the process to end, and returns its writers' reports. */
  stop(): Promise<LoadWriterReport[]>;
  /** Kills it without a report (for cleanup after a failure). */
  kill(): void;
}

export async function startLoadProcess(
  env: NodeJS.ProcessEnv,
  migration: string,
  table: string,
  firstId: number,
  writers: number,
): Promise<LoadProcess> {
  const child: ChildProcess = spawn(
    process.execPath,
    [path.join(__dirname, 'router-load-process.js'), migration, table, String(firstId), String(writers)],
    { env, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const lines = createInterface({ input: child.stdout! });
  const messages: Array<Record<string, unknown>> = [];
  let notify: () => void = () => undefined;
  lines.on('line', (line) => {
    try {
      messages.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      return;
    }
    notify();
  });
  // 'close', not 'exit': the last line of a long report may still be in the pipe when the process exits.
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const next = async (key: string): Promise<Record<string, unknown>> => {
    for (;;) {
      const found = messages.find((message) => key in message);
      if (found !== undefined) return found;
      const ended = await Promise.race([
        new Promise<false>((resolve) => (notify = () => resolve(false))),
        exited.then(() => true),
      ]);
      if (ended && !messages.some((message) => key in message)) {
        throw new Error(`the load process ended before it said ${key}`);
      }
    }
  };
  try {
    const ready = await next('ready');
    return {
      routerId: String(ready.routerId),
      stop: async () => {
        child.stdin!.write('stop\n');
        const report = await next('writers');
        await exited;
        return report.writers as LoadWriterReport[];
      },
      kill: () => {
        if (child.exitCode === null) child.kill('SIGKILL');
      },
    };
  } catch (err) {
    if (child.exitCode === null) child.kill('SIGKILL');
    throw err;
  }
}

/** Each load writer's counter (its row's customer_id) for writers 1..`writers`, by row id. */
export async function loadCounters(
  pool: pg.Pool,
  table: string,
  writers: number,
): Promise<Map<number, number>> {
  const { rows } = await pool.query<{ id: string; n: string }>(
    `SELECT id, customer_id AS n FROM ${table} WHERE id <= $1`,
    [writers],
  );
  return new Map(rows.map((row) => [Number(row.id), Number(row.n)]));
}

/**
 * Every acknowledged write of the load is on `pool` exactly once: each writer's counter moved by
 * exactly its acknowledged writes since `initial`, and the rows it inserted and did not delete are
 * there, no other.
 */
export async function assertLoadLanded(
  pool: pg.Pool,
  table: string,
  initial: Map<number, number>,
  reports: LoadWriterReport[],
): Promise<void> {
  const final = await loadCounters(pool, table, Math.max(...reports.map((writer) => writer.id)));
  for (const writer of reports) {
    assert.ok(writer.acknowledged > 0, `writer ${writer.id} wrote nothing`);
    assert.equal(final.get(writer.id), initial.get(writer.id)! + writer.acknowledged, `writer ${writer.id}`);
  }
  const { rows } = await pool.query<{ id: string }>(
    `SELECT id FROM ${table} WHERE status = 'load' ORDER BY id`,
  );
  const expected = reports
    .flatMap((writer) => writer.inserted.filter((id) => !writer.deleted.includes(id)))
    .sort((a, b) => a - b);
  assert.deepEqual(
    rows.map((row) => Number(row.id)),
    expected,
  );
}
