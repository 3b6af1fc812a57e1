// `pgcopydb clone` of one table, as an operator would run it: schema, data, indexes and constraints
// (built after the data), VACUUM ANALYZE, all in its own processes. Uses the PostgreSQL client tools
// of the given bin folder (Debian's pgcopydb package is built against PostgreSQL 15).
import { spawn } from 'node:child_process';
import {
  accessSync,
  constants,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { redactSecrets } from '../../model/redact';
import type { TableRef } from '../../model/tables';

export interface PgcopydbSettings {
  /** --table-jobs and --index-jobs. */
  jobs: number;
  /** --split-tables-larger-than (same-table concurrency), e.g. "64MB"; off when unset. */
  splitTablesLargerThan?: string;
  /** Folder holding pg_dump, pg_restore, psql and pg_config of the major pgcopydb was built for. */
  clientBinDir: string;
}

export interface PgcopydbRun {
  seconds: number;
  /** pgcopydb's own end-of-run timing table, as printed. */
  summary: string[];
  /** The pg_dump it ran, as its log shows. */
  pgDump?: string;
}

/** The pgcopydb executable on PATH, or undefined when it is not installed. */
export function findPgcopydb(searchPath = process.env.PATH ?? ''): string | undefined {
  for (const dir of searchPath.split(path.delimiter)) {
    if (dir === '') continue;
    const candidate = path.join(dir, 'pgcopydb');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The command line, without connection strings (those go through the environment, not argv). */
export function pgcopydbArgs(settings: PgcopydbSettings, workDir: string, filtersFile: string): string[] {
  return [
    'clone',
    '--dir',
    workDir,
    '--filters',
    filtersFile,
    '--no-owner',
    '--no-acl',
    '--table-jobs',
    String(settings.jobs),
    '--index-jobs',
    String(settings.jobs),
    ...(settings.splitTablesLargerThan !== undefined
      ? ['--split-tables-larger-than', settings.splitTablesLargerThan]
      : []),
  ];
}

function clientEnv(settings: PgcopydbSettings, sourceUrl: string, targetUrl: string): NodeJS.ProcessEnv {
  const pgConfig = path.join(settings.clientBinDir, 'pg_config');
  return {
    ...process.env,
    PATH: `${settings.clientBinDir}${path.delimiter}${process.env.PATH ?? ''}`,
    ...(existsSync(pgConfig) && { PG_CONFIG: pgConfig }),
    PGCOPYDB_SOURCE_PGURI: sourceUrl,
    PGCOPYDB_TARGET_PGURI: targetUrl,
  };
}

/** pgcopydb's closing timing table: from the header line with "Step" to the total line. */
function summaryLines(log: string): string[] {
  const lines = log.split('\n');
  const start = lines.findIndex((line) => /^\s*Step\s+Connection\s+Duration/.test(line));
  if (start < 0) return [];
  const end = lines.findIndex((line, i) => i > start && /Total Wall Clock Duration/.test(line));
  return lines.slice(start, end < 0 ? undefined : end + 1).filter((line) => line.trim() !== '');
}

/** The last lines of the log, for a failure message. */
export function logTail(logFile: string, count = 20): string {
  try {
    return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-count).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Runs `pgcopydb clone` of `table` only, with all its output in `logFile`. Resolves with the
 * wall-clock seconds; rejects (pointing at the log) when pgcopydb fails. Aborting `signal` ends
 * pgcopydb and every process it started.
 */
export async function runPgcopydbClone(options: {
  executable: string;
  settings: PgcopydbSettings;
  sourceUrl: string;
  targetUrl: string;
  table: TableRef;
  /** A folder for pgcopydb's work files, emptied first and removed afterwards. */
  workDir: string;
  logFile: string;
  signal: AbortSignal;
}): Promise<PgcopydbRun> {
  const { workDir } = options;
  rmSync(workDir, { recursive: true, force: true });
  mkdirSync(workDir, { recursive: true });
  const filtersFile = path.join(workDir, 'filters.ini');
  writeFileSync(filtersFile, `[include-only-table]\n${options.table.schema}.${options.table.table}\n`);
  const log = createWriteStream(options.logFile);
  try {
    const started = performance.now();
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>(
      (resolve, reject) => {
        // Its own process group, so that the whole tree can be ended together.
        const child = spawn(
          options.executable,
          pgcopydbArgs(options.settings, path.join(workDir, 'work'), filtersFile),
          {
            env: clientEnv(options.settings, options.sourceUrl, options.targetUrl),
            stdio: ['ignore', 'pipe', 'pipe'],
            detached: true,
          },
        );
        const endGroup = () => {
          if (child.pid !== undefined && child.exitCode === null) {
            try {
              process.kill(-child.pid, 'SIGTERM');
            } catch {
              // already gone
            }
          }
        };
        options.signal.addEventListener('abort', endGroup, { once: true });
        process.once('exit', endGroup);
        child.stdout.pipe(log, { end: false });
        child.stderr.pipe(log, { end: false });
        child.once('error', reject);
        child.once('close', (code, signal) => {
          options.signal.removeEventListener('abort', endGroup);
          process.removeListener('exit', endGroup);
          resolve({ code, signal });
        });
      },
    );
    const seconds = (performance.now() - started) / 1000;
    await new Promise<void>((resolve) => log.end(resolve));
    // The log stays for the operator to read: keep no password in it.
    const text = redactSecrets(readFileSync(options.logFile, 'utf8'));
    writeFileSync(options.logFile, text);
    if (exit.code !== 0) {
      throw new Error(
        `pgcopydb clone failed (${exit.signal ?? `exit code ${exit.code}`}); the end of ${options.logFile}:\n${logTail(options.logFile)}`,
      );
    }
    const pgDump = /(\S*pg_dump) -Fc/.exec(text);
    return {
      seconds,
      summary: summaryLines(text),
      ...(pgDump?.[1] !== undefined && { pgDump: pgDump[1] }),
    };
  } finally {
    log.destroy();
    rmSync(workDir, { recursive: true, force: true });
  }
}
