// The write load's body, run in a worker thread so that the backfill's work on the main thread's
// event loop (the Temporal worker, JSON of 1000-row chunks) does not delay it and pass for database
// latency. Each client is one connection doing single-row autocommit writes by primary key on a
// fixed schedule (open loop): 70% UPDATE of an existing row, 20% INSERT of a new key, 10% DELETE.
// A write that starts late because the previous one overran is timed from its scheduled start,
// so a stall shows in the latency instead of silently lowering the rate. In the `paused` phase it
// writes nothing (an idle application). With each write it also keeps how long this thread waited for
// a CPU meanwhile (Linux's schedstat; nothing elsewhere): on the machine the copy shares, part of a
// write's time is the load's own client waiting to run, which an application on machines of its
// own would not wait.
import { readlinkSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import pg from 'pg';
import { cpuWaitNs, waitedNsBetween } from '../../activities/thread-cpu-wait';
import { seededRandom } from '../../provision/write-load';
import {
  PAUSED_PHASE,
  type FromLoadThread,
  type ToLoadThread,
  type WriteLoadThreadData,
} from './write-load-messages';

const data = workerData as WriteLoadThreadData;
const port = parentPort!;
let phase = 'warmup';
let stopping = false;
const latencies: Record<string, number[]> = {};
const endedAt: Record<string, number[]> = {};
const ownCpuWaits: Record<string, number[]> = {};
const errors: Record<string, number> = {};
let lastError: string | undefined;

function writeOperation(client: number, sequence: number, next: () => number): pg.QueryConfig {
  const roll = next();
  const existingKey = String((1 + Math.floor(next() * data.seededRows)) * data.keyStep);
  if (roll < 0.7) {
    return {
      name: 'bench-update',
      text: `UPDATE ${data.table} SET status = $2, amount = $3, updated_at = now() WHERE id = $1`,
      values: [existingKey, next() < 0.5 ? 'paid' : 'shipped', (next() * 1000).toFixed(2)],
    };
  }
  if (roll < 0.9) {
    const newKey = String((data.seededRows + 1 + sequence * data.clients + client) * data.keyStep);
    return {
      name: 'bench-insert',
      text: `INSERT INTO ${data.table} (id, customer_id, status, amount, created_at) VALUES ($1, $2, 'new', $3, now())`,
      values: [newKey, Math.floor(next() * 100_000), (next() * 1000).toFixed(2)],
    };
  }
  return { name: 'bench-delete', text: `DELETE FROM ${data.table} WHERE id = $1`, values: [existingKey] };
}

async function runClient(connection: pg.Client, client: number): Promise<void> {
  const next = seededRandom(client + 1);
  const interval = (1000 * data.clients) / data.rate;
  let scheduled = performance.now() + (client * 1000) / data.rate;
  for (let sequence = 0; !stopping; sequence += 1) {
    const wait = scheduled - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    if (stopping) break;
    if (phase === PAUSED_PHASE) {
      // The application is idle: no write, and none owed once it writes again.
      scheduled = performance.now() + interval;
      continue;
    }
    const started = wait > 0 ? performance.now() : scheduled;
    const current = phase;
    try {
      const waitedBefore = cpuWaitNs();
      await connection.query(writeOperation(client, sequence, next));
      const ended = performance.now();
      const waitedAfter = cpuWaitNs();
      (latencies[current] ??= []).push(ended - started);
      (ownCpuWaits[current] ??= []).push(Number(waitedNsBetween(waitedBefore, waitedAfter)) / 1e6);
      (endedAt[current] ??= []).push(performance.timeOrigin + ended);
    } catch (err) {
      errors[current] = (errors[current] ?? 0) + 1;
      lastError = (err as Error).message;
    }
    scheduled += interval;
  }
}

/** This thread's id in the OS ("<pid>/task/<tid>"), where /proc tells it. */
function osThread(): { osThreadId?: number } {
  try {
    const tid = Number(readlinkSync('/proc/thread-self').split('/').at(-1));
    return Number.isInteger(tid) ? { osThreadId: tid } : {};
  } catch {
    return {};
  }
}

async function main(): Promise<void> {
  const connections = Array.from(
    { length: data.clients },
    () => new pg.Client({ connectionString: data.url, application_name: 'bench write load' }),
  );
  try {
    await Promise.all(connections.map((connection) => connection.connect()));
  } catch (err) {
    port.postMessage({ type: 'failed', message: (err as Error).message } satisfies FromLoadThread);
    await Promise.allSettled(connections.map((connection) => connection.end()));
    return;
  }
  const running = connections.map((connection, client) => runClient(connection, client));
  port.on('message', (message: ToLoadThread) => {
    if (message.type === 'phase') phase = message.phase;
    else stopping = true;
  });
  port.postMessage({ type: 'ready', ...osThread() } satisfies FromLoadThread);
  await Promise.all(running);
  await Promise.allSettled(connections.map((connection) => connection.end()));
  port.postMessage({
    type: 'done',
    latencies,
    endedAt,
    ownCpuWaits,
    errors,
    ...(lastError !== undefined && { lastError }),
  } satisfies FromLoadThread);
}

void main();
