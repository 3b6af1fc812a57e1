#!/usr/bin/env node
// A stand-in for an application process with a router: follows one migration's stage and prints a
// JSON line for every change it sees. Used by the stage store test, which runs several of them.
// Arguments: migration routerId listen|poll
import pg from 'pg';
import { StageWatcher } from '../../db/stage-store';

async function main(): Promise<void> {
  const [migration = 'test', routerId = `router-${process.pid}`, mode = 'listen'] = process.argv.slice(2);
  const pool = new pg.Pool({ connectionString: process.env.OLD_DATABASE_URL, max: 3 });
  const watcher = new StageWatcher(pool, migration, {
    routerId,
    listen: mode === 'listen',
    pollMs: mode === 'listen' ? 1000 : 200,
    heartbeatMs: 1000,
  });
  watcher.on('change', (state) =>
    process.stdout.write(`${JSON.stringify({ ...state, seenAt: Date.now() })}\n`),
  );
  const initial = await watcher.start();
  process.stdout.write(`${JSON.stringify({ ready: true, ...initial })}\n`);
  process.once('SIGTERM', () => {
    void watcher
      .stop()
      .then(() => pool.end())
      .then(() => process.exit(0));
  });
}

void main();
