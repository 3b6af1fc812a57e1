// A mixed write load on the sample table: inserts into gaps
// and above the largest key, updates and deletes of random rows, multi-row transactions and
// rolled-back ones, straight on a database or through a router. The tests provoke the hazards with
// it; the demo runs it through the routers and past them.
// Deterministic per seed; counts what it committed.
import type pg from 'pg';
import type { TableRef } from '../model/tables';
import { quoteTable } from '../db/sql';

export interface WriteLoadCounts {
  inserts: number;
  updates: number;
  deletes: number;
  rolledBack: number;
}

export interface WriteLoad {
  counts: WriteLoadCounts;
  /** Stops the writers and waits until every write in flight has committed or rolled back. */
  stop(): Promise<WriteLoadCounts>;
}

/** A small deterministic random generator (mulberry32), so a failing run can be repeated. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** What the load needs of a pool: a pg.Pool, or the migration's router (a drop-in for one). */
export interface LoadTarget {
  query(text: string, values?: unknown[]): Promise<pg.QueryResult>;
  connect(): Promise<{ query(text: string, values?: unknown[]): Promise<pg.QueryResult>; release(): void }>;
}

/**
 * Starts `writers` loops on `pool` against a sample table (provision/sample-table.ts) whose ids
 * lie in 1..maxId. Each loop runs one statement or transaction at a time until stopped.
 */
export function startWriteLoad(
  pool: LoadTarget,
  table: TableRef,
  options: { writers: number; maxId: number; seed: number; pauseMs?: number },
): WriteLoad {
  const name = quoteTable(table);
  const counts: WriteLoadCounts = { inserts: 0, updates: 0, deletes: 0, rolledBack: 0 };
  let running = true;
  const insertSql = `INSERT INTO ${name} (id, customer_id, status, amount, tags, attributes, payload, note, created_at, updated_at)
    VALUES ($1, $2, 'inserted-live', $3, ARRAY['live'], jsonb_build_object('live', $1::bigint), '\\x00ff'::bytea, 'écrit pendant la copie', now(), now())
    ON CONFLICT (id) DO NOTHING`;
  const updateSql = `UPDATE ${name} SET status = 'updated-live', amount = amount + 1, updated_at = now(),
    attributes = coalesce(attributes, '{}'::jsonb) || jsonb_build_object('touched', $2::int) WHERE id = $1`;
  const deleteSql = `DELETE FROM ${name} WHERE id = $1`;

  async function writer(seed: number): Promise<void> {
    const random = seededRandom(seed);
    const id = () => 1 + Math.floor(random() * options.maxId * 1.1);
    while (running) {
      const roll = random();
      if (roll < 0.3) {
        const result = await pool.query(insertSql, [id(), Math.floor(random() * 1000), random() * 100]);
        counts.inserts += result.rowCount ?? 0;
      } else if (roll < 0.65) {
        const result = await pool.query(updateSql, [id(), Math.floor(random() * 1000)]);
        counts.updates += result.rowCount ?? 0;
      } else if (roll < 0.9) {
        const result = await pool.query(deleteSql, [id()]);
        counts.deletes += result.rowCount ?? 0;
      } else {
        // A transaction of several writes; one in four rolls back and must leave no trace.
        const client = await pool.connect();
        try {
          await client.query('BEGIN');
          // Rows locked in random order by several writers may deadlock; PostgreSQL then rolls one back.
          const updated = await client.query(updateSql, [id(), 7]);
          const deleted = await client.query(deleteSql, [id()]);
          const inserted = await client.query(insertSql, [id(), 1, 1]);
          if (random() < 0.25) {
            await client.query('ROLLBACK');
            counts.rolledBack += 1;
          } else {
            await client.query('COMMIT');
            counts.updates += updated.rowCount ?? 0;
            counts.deletes += deleted.rowCount ?? 0;
            counts.inserts += inserted.rowCount ?? 0;
          }
        } catch (err) {
          if ((err as { code?: string }).code !== '40P01') throw err;
          await client.query('ROLLBACK');
          counts.rolledBack += 1;
        } finally {
          client.release();
        }
      }
      await new Promise((resolve) => setTimeout(resolve, options.pauseMs ?? 1));
    }
  }

  const loops = Array.from({ length: options.writers }, (_, i) => writer(options.seed * 100 + i));
  return {
    counts,
    async stop() {
      running = false;
      await Promise.all(loops);
      return counts;
    },
  };
}
