#!/usr/bin/env node
// `migrate` (installed: `pg-live-migrate`, through bin.ts): the operator's command line. Each command
// is a thin layer over the client helpers; errors are one line without a stack trace (add --debug for
// one) and never show a password.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command } from 'commander';
import { OperatorError } from '../model/errors';
import { loadMigrationConfig, loadSiteConfig } from '../config/load';
import type { SiteConfig } from '../config/schema';
import { resolveTemporalSettings } from '../config/temporal';
import { redactSecrets } from '../model/redact';
import { runDoctor } from './doctor';
import { commandEnvironment } from './environment';
import { formatMigrationList, listMigrations } from './migration-list';
import { formatMigrationStatus, MigrationControl, startMigration } from './migrations';
import { formatRetrying, retryingActivities } from './retrying';
import { preparedLine } from './start-report';
import type { CopyKnobs } from '../model/messages';
import { formatRouterReport, readRouterReport } from './routers';
import { formatSwitchPreview, readSwitchPreview } from './switch-preview';
import { connectClient } from './temporal-connection';
import { watch } from './watch';

/** The package's version, from its package.json (two folders up from dist/client/). */
function packageVersion(): string {
  const file = path.join(__dirname, '..', '..', 'package.json');
  return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
}

/** `--rows-per-second`: a whole number of rows per second, or `off`. */
function rowLimit(value: string): number | null {
  if (value === 'off') return null;
  if (!/^\d+$/.test(value) || Number(value) < 1) {
    throw new OperatorError(
      `--rows-per-second takes a whole number of rows per second above 0, or off (got ${value})`,
    );
  }
  return Number(value);
}

/** What `migrate throttle`'s options ask for; refused in one line when they ask for nothing or make no sense. */
function copyKnobs(options: Record<string, unknown>): CopyKnobs {
  const knobs: CopyKnobs = {};
  if (options.rowsPerSecond !== undefined) knobs.maxRowsPerSecond = rowLimit(options.rowsPerSecond as string);
  if (options.latencyTarget !== undefined) {
    const value = options.latencyTarget as string;
    knobs.latencyRatio = value === 'off' ? null : Number(value);
    if (knobs.latencyRatio !== null && !/^\d+(\.\d+)?$/.test(value)) {
      throw new OperatorError(`--latency-target takes a ratio such as 2 or 1.5, or off (got ${value})`);
    }
  }
  if (options.niceRatio !== undefined) {
    const value = options.niceRatio as string;
    if (!/^\d+(\.\d+)?$/.test(value)) {
      throw new OperatorError(`--nice-ratio takes a number such as 0.5 (0: never rest) (got ${value})`);
    }
    knobs.niceRatio = Number(value);
  }
  if (options.pauseCopy === true && options.resumeCopy === true) {
    throw new OperatorError('--pause-copy and --resume-copy contradict each other: give one');
  }
  if (options.pauseCopy === true) knobs.copyPaused = true;
  if (options.resumeCopy === true) knobs.copyPaused = false;
  if (Object.keys(knobs).length === 0) {
    throw new OperatorError(
      'throttle needs at least one of --rows-per-second N|off, --latency-target RATIO|off, --nice-ratio R, --pause-copy, --resume-copy',
    );
  }
  return knobs;
}

/** `--interval`: seconds between reports, at least 0.2. */
function interval(value: string): number {
  const seconds = Number(value);
  if (!Number.isFinite(seconds) || seconds < 0.2) {
    throw new OperatorError(`--interval takes a number of seconds, at least 0.2 (got ${value})`);
  }
  return Math.round(seconds * 1000);
}

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

/** Runs `work` with a Temporal client for the site, and closes the connection afterwards. */
async function withClient<T>(
  site: SiteConfig,
  quiet: boolean,
  work: (client: Awaited<ReturnType<typeof connectClient>>, taskQueue: string) => Promise<T>,
): Promise<T> {
  const { env, note } = commandEnvironment();
  if (note !== undefined && !quiet) print(`note: ${note}`);
  const settings = resolveTemporalSettings(site, env);
  let client: Awaited<ReturnType<typeof connectClient>>;
  try {
    client = await connectClient(settings);
  } catch (err) {
    throw new OperatorError(`cannot reach Temporal at ${settings.address}: ${(err as Error).message}`);
  }
  try {
    return await work(client, settings.taskQueue);
  } finally {
    await client.connection.close();
  }
}

/** A command on one migration, by name. */
function control(
  program: Command,
  name: string,
  description: string,
  run: (migration: MigrationControl, options: Record<string, string | boolean | undefined>) => Promise<void>,
): Command {
  return program
    .command(name)
    .description(description)
    .argument('<migration>', 'the migration name')
    .option(
      '-c, --config <file>',
      'config file for the Temporal settings; without it, they come from the environment',
    )
    .action(async (migration: string, options: Record<string, string | boolean | undefined>) => {
      const site = loadSiteConfig(options.config as string | undefined);
      await withClient(site, options.json === true, (client) =>
        run(new MigrationControl(client, migration), options),
      );
    });
}

export function buildProgram(): Command {
  const program = new Command('migrate')
    .description('Move a live PostgreSQL database to a new cluster with zero downtime, on Temporal.')
    .version(packageVersion(), '-V, --version', 'print the version')
    .option('--debug', 'print stack traces of unexpected errors')
    .showHelpAfterError();

  program
    .command('doctor')
    .description('check that Temporal and the old and new databases answer, and print their versions')
    .option(
      '-c, --config <file>',
      'migration config file (YAML or JSON); without it, everything comes from the environment',
    )
    .action(async (options: { config?: string }) => {
      const site = loadSiteConfig(options.config);
      const { env, note } = commandEnvironment();
      if (note !== undefined) print(`note: ${note}`);
      const results = await runDoctor(site, env);
      for (const result of results) print(`${result.ok ? '✓' : '✗'} ${result.line}`);
      const failed = results.filter((result) => !result.ok).length;
      print(failed === 0 ? 'all checks passed' : `${failed} of ${results.length} checks failed`);
      if (failed > 0) process.exitCode = 1;
    });

  program
    .command('routers')
    .description("show the migration's stage and which stage version every registered router has seen")
    .argument('<migration>', 'the migration name')
    .option('-c, --config <file>', 'migration config file; without it, old comes from OLD_DATABASE_URL')
    .option('--json', 'print the report as JSON')
    .action(async (migration: string, options: { config?: string; json?: boolean }) => {
      const site = loadSiteConfig(options.config);
      const { env, note } = commandEnvironment();
      if (note !== undefined && options.json !== true) print(`note: ${note}`);
      const report = await readRouterReport(site, env, migration);
      if (options.json === true) print(JSON.stringify(report, null, 2));
      else for (const line of formatRouterReport(report)) print(line);
      if (report.routers.some((router) => router.behind || router.silent)) process.exitCode = 1;
    });

  program
    .command('start')
    .description(
      'start the migration a config file describes (safe to repeat: a running one is left as it is)',
    )
    .requiredOption('-c, --config <file>', 'migration config file (YAML or JSON)')
    .action(async (options: { config: string }) => {
      const config = loadMigrationConfig(options.config);
      await withClient(config, false, async (client, taskQueue) => {
        const started = await startMigration(client, config, taskQueue);
        if (!started.started) {
          print(
            `migration ${config.name} is already running (workflow ${started.workflowId}); nothing changed`,
          );
          return;
        }
        print(`started migration ${config.name} (workflow ${started.workflowId}, task queue ${taskQueue})`);
        // Refusals come while preparing, before anything is written: wait for them here.
        print(await preparedLine(client, config.name, taskQueue));
      });
    });

  control(
    program,
    'status',
    "print the migration's step, gates, live progress (rows, rate, ETA, throttle, sync backlog and lag) and latest events",
    async (migration, options) => {
      const json = options.json === true;
      const report = async () => {
        const status = await migration.liveStatus();
        // Work that fails and is being retried: which activity, since when, the last error.
        const retrying = await retryingActivities(migration.client, migration.name);
        const ended = ['retired', 'aborted'].includes(status.phase) || status.error !== null;
        return {
          lines: json
            ? [JSON.stringify({ ...status, retrying }, null, 2)]
            : [...formatMigrationStatus(status, process.stdout.isTTY === true), ...formatRetrying(retrying)],
          ended,
        };
      };
      if (options.watch !== true) {
        for (const line of (await report()).lines) print(line);
        return;
      }
      await watch(report, {
        intervalMs: interval((options.interval as string | undefined) ?? '2'),
        ...(options.count !== undefined && { count: Math.max(1, Number(options.count)) }),
        tty: process.stdout.isTTY === true && !json,
        write: (text) => process.stdout.write(text),
      });
    },
  )
    .option('--json', 'print the status as JSON')
    .option(
      '-w, --watch',
      'redraw the status until the migration ends (Ctrl-C stops); plain lines when not on a terminal',
    )
    .option('--interval <seconds>', 'seconds between reports with --watch (default 2)')
    .option('--count <n>', 'with --watch: stop after n reports');

  program
    .command('list')
    .description('list the migrations in the Temporal namespace with their stage, step and phase')
    .option(
      '-c, --config <file>',
      'config file for the Temporal settings; without it, they come from the environment',
    )
    .option('--json', 'print the list as JSON')
    .action(async (options: { config?: string; json?: boolean }) => {
      const site = loadSiteConfig(options.config);
      await withClient(site, options.json === true, async (client) => {
        const migrations = await listMigrations(client);
        if (options.json === true) print(JSON.stringify(migrations, null, 2));
        else for (const line of formatMigrationList(migrations)) print(line);
      });
    });

  control(
    program,
    'throttle',
    "set the copy's knobs for every table's backfill, running or to come: the row limit (each table gets the whole limit; its partitions share it), the latency target, the nice ratio, or pause copying only",
    async (migration, options) => {
      const knobs = copyKnobs(options);
      const result = await migration.throttle(knobs, process.env.USER);
      const said = [
        result.maxRowsPerSecond !== undefined &&
          `row limit ${result.maxRowsPerSecond === null ? 'off' : `${result.maxRowsPerSecond} rows/s per table`}`,
        result.latencyRatio !== undefined &&
          `latency target ${result.latencyRatio === null ? 'off' : `${result.latencyRatio}× the application's baseline`}`,
        result.niceRatio !== undefined && `nice ratio ${result.niceRatio}`,
        result.copyPaused !== undefined && `copying ${result.copyPaused ? 'paused' : 'resumed'}`,
      ].filter((part): part is string => part !== false);
      print(
        `migration ${migration.name}: ${said.join(', ')} (${result.backfillsTold} backfills running were told)`,
      );
    },
  )
    .option('--rows-per-second <n>', 'rows per second for each table, or off')
    .option(
      '--latency-target <ratio>',
      "the application's p99 may grow to this many times its baseline (e.g. 2), or off",
    )
    .option(
      '--nice-ratio <r>',
      "after each batch of chunks, rest this fraction of the batch's time (0: never)",
    )
    .option('--pause-copy', 'stop copying (chunks in flight finish); the rest of the migration goes on')
    .option('--resume-copy', 'copy again after --pause-copy');

  program
    .command('switch')
    .description(
      'with --dry-run: what the write switch would do now (routers to acknowledge, change log, sequences, guards and capture); changes nothing',
    )
    .argument('<migration>', 'the migration name')
    .option(
      '-c, --config <file>',
      'config file for the Temporal and database settings; without it, they come from the environment',
    )
    .option('--dry-run', 'print what the switch would do now, changing nothing (the only mode)')
    .option('--json', 'print the preview as JSON')
    .action(async (migration: string, options: { config?: string; dryRun?: boolean; json?: boolean }) => {
      if (options.dryRun !== true) {
        throw new OperatorError(
          `the write switch runs when migration ${migration} enters switched (\`migrate approve ${migration}\` when it waits there); \`migrate switch ${migration} --dry-run\` previews it`,
        );
      }
      const site = loadSiteConfig(options.config);
      await withClient(site, options.json === true, async (client) => {
        const preview = await readSwitchPreview(
          new MigrationControl(client, migration),
          site,
          commandEnvironment().env,
        );
        if (options.json === true) print(JSON.stringify(preview, null, 2));
        else for (const line of formatSwitchPreview(preview)) print(line);
      });
    });

  control(
    program,
    'pause',
    'stop the ramp and the backfill where they are (chunks in flight finish)',
    async (migration) => {
      await migration.pause();
      print(`asked migration ${migration.name} to pause`);
    },
  );

  control(
    program,
    'resume',
    'go on after a pause; retry a failed gate or write switch',
    async (migration) => {
      await migration.resume();
      print(`asked migration ${migration.name} to resume`);
    },
  );

  control(
    program,
    'approve',
    'release what the migration waits for: an approval point or a failed gate',
    async (migration) => {
      const result = await migration.approve(process.env.USER);
      print(`approved: ${result.released}`);
    },
  );

  control(
    program,
    'rollback',
    'roll back to an earlier step (default: one step); from switched, authority moves back to old without losing a write',
    async (migration, options) => {
      const result = await migration.rollback(options.to as string | undefined, process.env.USER);
      print(`rolled back migration ${migration.name} from ${result.from} to ${result.to}`);
    },
  ).option('--to <step>', 'off, dual_write, shadow, live, live:25, switched');

  control(
    program,
    'abort',
    'end the migration: everyone back on old, capture and guards removed (new keeps its rows)',
    async (migration) => {
      const result = await migration.abort(process.env.USER);
      print(`aborted migration ${migration.name} at ${result.abortedAt}; everyone is on old`);
    },
  );

  return program;
}

export async function main(): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof OperatorError) {
      process.stderr.write(`error: ${redactSecrets(err.message)}\n`);
      process.exitCode = 2;
      return;
    }
    const debug = program.opts<{ debug?: boolean }>().debug === true;
    const detail = err instanceof Error ? (debug ? (err.stack ?? err.message) : err.message) : String(err);
    process.stderr.write(
      `unexpected error: ${redactSecrets(detail)}${debug ? '' : ' (rerun with --debug for details)'}\n`,
    );
    process.exitCode = 1;
  }
}

if (require.main === module) void main();
