// Starts stage-watcher-process.ts as stand-ins for application processes with a router, and reads
// the stage changes each one prints.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

export interface SeenStage {
  ready?: boolean;
  stage: string;
  version: number;
  readPercent: number;
  seenAt?: number;
}

export interface StageWatcherProcess {
  /** What it printed so far: its ready line, then one line per stage change. */
  seen: SeenStage[];
  /** SIGTERM (it unregisters) or SIGKILL (it dies as a crash would); resolves once it has exited. */
  stop(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
}

export function startStageWatcherProcess(
  migration: string,
  routerId: string,
  mode: 'listen' | 'poll',
  env: NodeJS.ProcessEnv = process.env,
): StageWatcherProcess {
  const child: ChildProcess = spawn(
    process.execPath,
    [path.join(__dirname, 'stage-watcher-process.js'), migration, routerId, mode],
    { stdio: ['ignore', 'pipe', 'inherit'], env },
  );
  const seen: SeenStage[] = [];
  let partial = '';
  child.stdout?.on('data', (data: Buffer) => {
    const lines = (partial + data.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) if (line.trim() !== '') seen.push(JSON.parse(line) as SeenStage);
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return {
    seen,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
}
