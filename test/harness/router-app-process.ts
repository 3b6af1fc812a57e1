#!/usr/bin/env node
// A stand-in for an application process with a router, for the hazard 4 test: it writes one row
// through the router in `dual_write` and, right after old committed it and before the mirror, says
// so on stdout and holds the mirror until the process is killed. Arguments: migration, table (schema.name), id.
import { createRouter } from '../../router';
import { createLogger } from '../../db/logger';

async function main(): Promise<void> {
  const [migration = 'test', table = 'public.t', id = '1'] = process.argv.slice(2);
  const router = await createRouter({
    migration,
    old: { connectionString: process.env.OLD_DATABASE_URL },
    new: { connectionString: process.env.NEW_DATABASE_URL },
    logger: createLogger({ name: 'app', level: 'error', pretty: false }),
    testHooks: {
      afterAuthoritativeCommit: async (written) => {
        process.stdout.write(`${JSON.stringify({ committed: written })}\n`);
        await new Promise(() => undefined);
      },
    },
  });
  process.stdout.write(`${JSON.stringify({ ready: true, stage: router.stage.stage })}\n`);
  await router.query(
    `INSERT INTO ${table} (id, customer_id, status, created_at) VALUES ($1, 1, 'committed-then-killed', now())`,
    [id],
  );
  // The write answered after old's commit (dual_write); its mirror waits at the hook until killed.
  process.stdout.write(`${JSON.stringify({ answered: true })}\n`);
}

void main();
