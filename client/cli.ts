#!/usr/bin/env node
// `migrate`: the operator's command line. Each command is a thin layer over the client helpers;
// errors are one line without a stack trace (add --debug for one) and never show a password.
import { Command } from 'commander';
import { OperatorError } from '../config/errors';
import { loadSiteConfig } from '../config/load';
import { redactSecrets } from '../config/redact';
import { runDoctor } from './doctor';
import { commandEnvironment } from './environment';
import { formatRouterReport, readRouterReport } from './routers';

function print(line: string): void {
  process.stdout.write(`${line}\n`);
}

export function buildProgram(): Command {
  const program = new Command('migrate')
    .description('Move a live PostgreSQL database to a new cluster with zero downtime, on Temporal.')
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

  return program;
}

async function main(): Promise<void> {
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
