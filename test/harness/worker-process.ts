// A worker in a process of its own (dist/worker/main.js), so a test can kill it like a crash would.
// Its JSON log lines are kept for the test to read.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface WorkerProcess {
  child: ChildProcess;
  /** Parsed JSON log lines so far. */
  lines: Array<Record<string, unknown>>;
  /** Resolves when the process has exited. */
  exited: Promise<void>;
  kill(signal: NodeJS.Signals): Promise<void>;
}

export function startWorkerProcess(taskQueue: string, env: NodeJS.ProcessEnv = {}): WorkerProcess {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'worker-'));
  const config = path.join(dir, 'site.json');
  writeFileSync(config, JSON.stringify({ temporal: { taskQueue } }));
  const child = spawn(process.execPath, [path.join(__dirname, '../../worker/main.js'), '--config', config], {
    env: { ...process.env, LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: Array<Record<string, unknown>> = [];
  let partial = '';
  child.stdout?.on('data', (data: Buffer) => {
    const text = partial + data.toString('utf8');
    const complete = text.split('\n');
    partial = complete.pop() ?? '';
    for (const line of complete) {
      try {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      } catch {
        // Not a log line.
      }
    }
  });
  // 'close', not 'exit': the log lines still in the pipe have been read by then.
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return {
    child,
    lines,
    exited,
    async kill(signal) {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
