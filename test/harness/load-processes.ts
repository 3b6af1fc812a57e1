// Starts router-load-process.ts as separate application processes and collects their reports.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
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
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
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
