#!/usr/bin/env node
// `pg-live-migrate`, the command an installed package puts on the PATH: the CLI (cli.ts) once the
// Temporal SDK it talks through is installed. The SDK is an optional peer dependency (an application
// with the router alone does not install it), so a missing part is named in one line, with the
// command that adds it, instead of a module-not-found stack trace. (`npm run migrate` in a checkout,
// where the SDK is a dev dependency, runs cli.ts directly.)
const NEEDED = ['@temporalio/client', '@temporalio/common', '@temporalio/workflow'];

function isInstalled(name: string): boolean {
  try {
    require.resolve(name);
    return true;
  } catch {
    return false;
  }
}

const missing = NEEDED.filter((name) => !isInstalled(name));
if (missing.length > 0) {
  process.stderr.write(
    `error: pg-live-migrate needs the Temporal SDK, and ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not installed: npm install ${NEEDED.join(' ')}\n`,
  );
  process.exitCode = 2;
} else {
  // Loaded only now: cli.ts loads the SDK as it starts.
  void import('./cli.js').then((cli) => cli.main());
}
