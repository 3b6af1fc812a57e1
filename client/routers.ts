// `migrate routers <migration>`: the migration's stage and every registered router with the stage
// version it has seen and its last heartbeat, so an operator (and later the cutover) can see who
// follows and who lags or went silent. Reads old's stage store; changes nothing.
import pg from 'pg';
import { HELPER_SCHEMA } from '../db/helper-schema';
import { resolveConnection } from '../config/connections';
import type { SiteConfig } from '../config/schema';
import { listRouters, readStage, SILENT_AFTER_SECONDS, type RegisteredRouter } from '../db/stage-store';
import type { StageState } from '../model/stages';
import { OperatorError } from '../model/errors';
import { describeConnectionError } from './doctor';

export interface RouterReport {
  migration: string;
  stage: StageState;
  /** `silent`: not heard from for SILENT_AFTER_SECONDS, or its session on old has ended (gone). */
  routers: Array<RegisteredRouter & { behind: boolean; silent: boolean }>;
}

/** How a router stands toward the stage: what a fence would wait for (live, behind) and would not. */
export type RouterState = 'live' | 'behind' | 'silent' | 'gone';

export function routerState(router: RegisteredRouter, stageVersion: number): RouterState {
  if (router.sessionGone) return 'gone';
  if (router.silentSeconds > SILENT_AFTER_SECONDS) return 'silent';
  return (router.version ?? 0) < stageVersion ? 'behind' : 'live';
}

function unknownMigration(migration: string): OperatorError {
  return new OperatorError(
    `old knows no migration named ${migration}: it has set no stage and no router has registered for it (check the name; a migration sets its first stage when it enters dual_write)`,
  );
}

export async function readRouterReport(
  site: SiteConfig,
  env: NodeJS.ProcessEnv,
  migration: string,
): Promise<RouterReport> {
  const connection = resolveConnection('old', site.old, env);
  const pool = new pg.Pool({
    connectionString: connection.connectionString,
    max: 1,
    connectionTimeoutMillis: 5000,
  });
  pool.on('error', () => undefined);
  try {
    const installed = await pool.query<{ installed: boolean }>(
      `SELECT to_regclass('${HELPER_SCHEMA}.stages') IS NOT NULL AS installed`,
    );
    const stage = installed.rows[0]?.installed === true ? await readStage(pool, migration) : undefined;
    const routers = stage === undefined ? [] : await listRouters(pool, migration);
    if (stage === undefined || (stage.version === 0 && routers.length === 0))
      throw unknownMigration(migration);
    return {
      migration,
      stage,
      routers: routers.map((router) => ({
        ...router,
        behind: (router.version ?? 0) < stage.version,
        silent: router.sessionGone || router.silentSeconds > SILENT_AFTER_SECONDS,
      })),
    };
  } catch (err) {
    if (err instanceof OperatorError) throw err;
    throw new OperatorError(describeConnectionError(connection, err));
  } finally {
    await pool.end();
  }
}

export function formatRouterReport(report: RouterReport): string[] {
  const { stage } = report;
  const lines = [
    `migration ${report.migration}: stage ${stage.stage}${
      stage.stage === 'live' ? ` (${stage.readPercent}% of reads on new)` : ''
    }, version ${stage.version}${stage.version === 0 ? ' (never set)' : ''}`,
  ];
  if (report.routers.length === 0) {
    lines.push('no router has registered for this migration');
    return lines;
  }
  for (const router of report.routers) {
    const state = router.sessionGone ? 'GONE' : router.silent ? 'SILENT' : router.behind ? 'BEHIND' : 'ok';
    lines.push(
      `${state.padEnd(6)} ${router.routerId}  ${router.host ?? '?'} pid ${router.pid ?? '?'}: sees ${router.stage ?? '?'} version ${router.version ?? '?'}, last heartbeat ${router.silentSeconds.toFixed(1)} s ago${
        router.sessionGone ? '; its session on old has ended (has its process died?)' : ''
      }`,
    );
  }
  const lagging = report.routers.filter((router) => router.behind || router.silent).length;
  lines.push(
    lagging === 0
      ? `all ${report.routers.length} routers follow version ${stage.version}`
      : `${lagging} of ${report.routers.length} routers are behind, silent or gone`,
  );
  return lines;
}
