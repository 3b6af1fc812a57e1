// The latency brake's probe, in a thread of its own (latency-probes.ts starts it): runs the operator's
// probe query on one session every few tens of milliseconds and posts each run's time. Its own event
// loop times nothing but the probe, so a worker busy piping rows does not make the source look slow.
// A failed run (the source restarting, the session lost) is posted as an error; the session is opened
// again a second later.
import { parentPort, workerData } from 'node:worker_threads';
import pg from 'pg';

export interface ProbeThreadData {
  session: pg.ClientConfig;
  probeQuery: string;
  /** The pause after each run, in ms. */
  everyMs: number;
}

export type FromProbeThread =
  | { type: 'started'; at: number }
  | { type: 'run'; at: number; ms: number }
  | { type: 'error'; at: number; message: string };

export type ToProbeThread = { type: 'stop' };

const RECONNECT_MS = 1000;

async function probeLoop(data: ProbeThreadData, port: NonNullable<typeof parentPort>): Promise<void> {
  let stopping = false;
  let session: pg.Client | undefined;
  let wake: (() => void) | undefined;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  port.on('message', (message: ToProbeThread) => {
    if (message.type !== 'stop') return;
    stopping = true;
    wake?.();
  });
  while (!stopping) {
    try {
      if (session === undefined) {
        const opening = new pg.Client(data.session);
        // A session the server ends between two runs fails the next run; no uncaught 'error' here.
        opening.on('error', () => undefined);
        await opening.connect();
        session = opening;
      }
      port.postMessage({ type: 'started', at: Date.now() } satisfies FromProbeThread);
      const started = process.hrtime.bigint();
      await session.query(data.probeQuery);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      port.postMessage({ type: 'run', at: Date.now(), ms } satisfies FromProbeThread);
      await pause(data.everyMs);
    } catch (err) {
      port.postMessage({
        type: 'error',
        at: Date.now(),
        message: (err as Error).message,
      } satisfies FromProbeThread);
      await session?.end().catch(() => undefined);
      session = undefined;
      await pause(RECONNECT_MS);
    }
  }
  await session?.end().catch(() => undefined);
  port.close();
}

if (parentPort !== null) void probeLoop(workerData as ProbeThreadData, parentPort);
