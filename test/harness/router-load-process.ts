#!/usr/bin/env node
// An application process for the end-to-end migration tests: one router (with the migration's
// reconciliation as its discrepancy sink) and a mixed load through it until stdin says "stop".
// Each writer owns one row and counts it up once per acknowledged write (autocommit updates and
// two-statement transactions by turns), and between writes reads its row (routed by its id, so from
// new for its share in live) and inserts or deletes rows of its own id range. A read that does not
// show the count its writer's last acknowledged write left is a failure (a stale read: a mirror
// still landing when reads went to new). On stop it prints what it did as one JSON line: per writer
// the acknowledged count, the ids it inserted and deleted, and every failure.
// Environment: OLD_DATABASE_URL, NEW_DATABASE_URL, TEMPORAL_ADDRESS. Arguments: migration, table
// (schema.name), the first writer's row id, writers.
import { createInterface } from 'node:readline';
import { Client, Connection } from '@temporalio/client';
import { createRouter } from '../../router';
import { createLogger } from '../../db/logger';

export interface LoadWriterReport {
  id: number;
  acknowledged: number;
  reads: number;
  inserted: number[];
  deleted: number[];
  failures: string[];
  longestWriteMs: number;
}

async function main(): Promise<void> {
  const [migration = 'test', table = 'public.t', firstId = '1', writerCount = '2'] = process.argv.slice(2);
  const connection = await Connection.connect({ address: process.env.TEMPORAL_ADDRESS });
  const router = await createRouter({
    migration,
    old: { connectionString: process.env.OLD_DATABASE_URL, max: 6 },
    new: { connectionString: process.env.NEW_DATABASE_URL, max: 6 },
    logger: createLogger({ name: 'app', level: 'error', pretty: false }),
    stageWatcher: { pollMs: 200, heartbeatMs: 500 },
    shadow: { sampleRate: 0.5 },
    reconciliation: { client: new Client({ connection }) },
  });
  /** Mirrors that did not land (queued for reconciliation instead). */
  const mirrorsMissed = async () => {
    let missed = 0;
    for (const result of ['failed', 'timed_out', 'circuit_open', 'too_many_keys']) {
      missed += await router.metrics.count('mirrors', result);
    }
    return missed;
  };
  let stopping = false;
  const writers: LoadWriterReport[] = [];
  const loops = Array.from({ length: Number(writerCount) }, async (_, i) => {
    const writer: LoadWriterReport = {
      id: Number(firstId) + i,
      acknowledged: 0,
      reads: 0,
      inserted: [],
      deleted: [],
      failures: [],
      longestWriteMs: 0,
    };
    writers.push(writer);
    // Rows this writer inserts: its own range, far above the seeded ids.
    let nextInsert = 1_000_000 + writer.id * 10_000;
    const countUp = `UPDATE ${table} SET customer_id = customer_id + 1 WHERE id = $1 RETURNING customer_id::text`;
    /** The count the last acknowledged write left, as text. */
    let written: string | undefined;
    for (let round = 0; !stopping; round++) {
      const started = Date.now();
      const missedBefore = await mirrorsMissed();
      try {
        if (round % 2 === 0) {
          written = (await router.query<{ customer_id: string }>(countUp, [writer.id])).rows[0]?.customer_id;
        } else {
          const client = await router.connect();
          try {
            await client.query('BEGIN');
            const counted = await client.query<{ customer_id: string }>(countUp, [writer.id]);
            await client.query(`UPDATE ${table} SET note = $2 WHERE id = $1`, [writer.id, `round ${round}`]);
            await client.query('COMMIT');
            written = counted.rows[0]?.customer_id;
          } finally {
            client.release();
          }
        }
        writer.acknowledged++;
      } catch (err) {
        writer.failures.push(`write: ${(err as Error).message}`);
        // Whether it committed is unknown: the next read is not checked.
        written = undefined;
      }
      writer.longestWriteMs = Math.max(writer.longestWriteMs, Date.now() - started);
      try {
        const read = await router.query<{ customer_id: string }>({
          text: `SELECT customer_id::text FROM ${table} WHERE id = $1`,
          values: [writer.id],
          routingKey: writer.id,
        });
        writer.reads++;
        const seen = read.rows[0]?.customer_id;
        // A mirror that failed or timed out leaves new behind until reconciliation: by design the
        // write still succeeds, so such a round is not checked.
        if (written !== undefined && seen !== written && (await mirrorsMissed()) === missedBefore) {
          writer.failures.push(
            `stale read in round ${round}: count ${seen} after a write that left ${written}`,
          );
        }
        if (round % 5 === 0) {
          const id = nextInsert++;
          await router.query(
            `INSERT INTO ${table} (id, customer_id, status, created_at) VALUES ($1, $2, 'load', now())`,
            [id, writer.id],
          );
          writer.inserted.push(id);
        }
        if (round % 15 === 0 && writer.inserted.length > writer.deleted.length + 1) {
          const id = writer.inserted[writer.deleted.length]!;
          await router.query(`DELETE FROM ${table} WHERE id = $1`, [id]);
          writer.deleted.push(id);
        }
      } catch (err) {
        writer.failures.push(`read or insert: ${(err as Error).message}`);
      }
    }
  });
  process.stdout.write(`${JSON.stringify({ ready: true, routerId: router.routerId })}\n`);
  const lines = createInterface({ input: process.stdin });
  for await (const line of lines) {
    if (line.trim() === 'stop') break;
  }
  stopping = true;
  await Promise.all(loops);
  await router.end();
  await connection.close();
  // Exits once the report is written: a long one does not fit the pipe at once.
  process.stdout.write(`${JSON.stringify({ writers })}\n`, () => process.exit(0));
}

void main();
