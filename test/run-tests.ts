#!/usr/bin/env node
// `npm test`: runs every test file with node's test runner. When any of them is an integration test
// (test/integration/), it first starts one Temporal dev server and the old and new PostgreSQL
// clusters (PostgreSQL 15 and 17 by default) and always stops them, also when the tests fail or the
// run is interrupted; unit, workflow and replay tests need no server of the stack.
// `npm test -- test/unit` runs only the files under the given paths (`npm run test:unit`,
// `npm run test:integration`).
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { OperatorError } from '../model/errors';
import { startLocalStack, type LocalStack } from '../provision/local-stack';
import { dataDir } from '../provision/project-paths';
import { parsePostgresMajor } from '../provision/postgres';
import { createLogger } from '../db/logger';
import { installRuntime } from '../worker/runtime';

const logger = createLogger({ name: 'test-run', pretty: false });
const compiledTests = __dirname;
const TEST_SUGGEST_CONTINUE_AS_NEW = 300;

function testFiles(dir: string): string[] {
  if (statSync(dir).isFile()) return dir.endsWith('.test.js') ? [dir] : [];
  return readdirSync(dir)
    .sort()
    .flatMap((entry) => testFiles(path.join(dir, entry)));
}

function selectedFiles(args: string[]): string[] {
  if (args.length === 0) return testFiles(compiledTests);
  return args.flatMap((arg) => {
    const relative = path.relative('test', arg.replace(/\.ts$/, '.js'));
    const compiled = path.join(compiledTests, relative);
    return existsSync(compiled) ? testFiles(compiled) : [];
  });
}

/** "N passed, N failed" from the spec reporter's closing counts. */
function summarize(output: string): string | undefined {
  const count = (label: string) => output.match(new RegExp(`ℹ ${label} (\\d+)`))?.[1];
  const passed = count('pass');
  const failed = count('fail');
  if (passed === undefined || failed === undefined) return undefined;
  const skipped = count('skipped');
  return `${passed} passed, ${failed} failed${skipped !== undefined && skipped !== '0' ? `, ${skipped} skipped` : ''}`;
}

async function main(): Promise<number> {
  const files = selectedFiles(process.argv.slice(2));
  if (files.length === 0) throw new OperatorError(`no test files match ${process.argv.slice(2).join(' ')}`);
  installRuntime(logger, []);
  const started = Date.now();
  let stack: LocalStack | undefined;
  let interrupted = false;
  let summary: string | undefined;
  const child: { kill?: (signal: NodeJS.Signals) => void } = {};
  const interrupt = (signal: NodeJS.Signals) => {
    interrupted = true;
    logger.warn(`${signal}: stopping the tests and the servers`);
    child.kill?.(signal);
  };
  process.on('SIGINT', interrupt);
  process.on('SIGTERM', interrupt);
  try {
    const needsServers = files.some((file) => file.split(path.sep).includes('integration'));
    if (needsServers)
      stack = await startLocalStack({
        root: path.join(dataDir, 'test'),
        persistent: false,
        oldMajor: parsePostgresMajor(process.env.TEST_OLD_PG_MAJOR, 15, 'TEST_OLD_PG_MAJOR'),
        newMajor: parsePostgresMajor(process.env.TEST_NEW_PG_MAJOR, 17, 'TEST_NEW_PG_MAJOR'),
        postgresSettings: {
          fsync: 'off',
          synchronous_commit: 'off',
          full_page_writes: 'off',
          max_connections: '300',
        },
        // Continue-as-new is suggested after a few hundred events instead of thousands, so the
        // tests cross it (in partitions, under load, across kills) rather than only the benchmark.
        temporalDynamicConfig: { 'limit.historyCount.suggestContinueAsNew': TEST_SUGGEST_CONTINUE_AS_NEW },
        log: (message) => logger.info(message),
      });
    logger.info(
      stack === undefined
        ? `running ${files.length} test files, no server needed`
        : `servers ready in ${((Date.now() - started) / 1000).toFixed(1)} s; running ${files.length} test files`,
    );
    if (interrupted) return 130;
    const env = {
      ...process.env,
      ...stack?.env,
      ...(stack !== undefined && {
        TEMPORAL_CLI: stack.cli.path,
        TEST_OLD_PG_MAJOR: String(stack.old.major),
        TEST_NEW_PG_MAJOR: String(stack.new.major),
      }),
      MIGRATE_IGNORE_DEV_STACK: '1',
    };
    // The timeout only guards against a hang; no test measures time. Integration tests share the
    // servers and run one file at a time; without them two files run at once (the workflow tests'
    // files each start their own time-skipping server).
    const concurrency = stack === undefined ? 2 : 1;
    const runner = spawn(
      process.execPath,
      [
        '--test',
        `--test-concurrency=${concurrency}`,
        '--test-timeout=600000',
        '--test-reporter=spec',
        ...files,
      ],
      {
        env,
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    child.kill = (signal) => runner.kill(signal);
    let output = '';
    runner.stdout.on('data', (chunk: Buffer) => {
      process.stdout.write(chunk);
      output = (output + chunk.toString('utf8')).slice(-4096);
    });
    const code = await new Promise<number>((resolve) =>
      runner.once('close', (exitCode) => resolve(exitCode ?? 1)),
    );
    summary = summarize(output);
    return interrupted ? 130 : code;
  } finally {
    await stack?.stop();
    logger.info(
      `${stack === undefined ? 'no servers to stop' : 'servers stopped'}; whole run took ${((Date.now() - started) / 1000).toFixed(1)} s`,
    );
    // The runner's totals again, last, after the servers' shutdown lines.
    if (summary !== undefined) process.stdout.write(`${summary}\n`);
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    logger.error(err instanceof OperatorError ? err.message : String(err));
    process.exit(1);
  },
);
