// The router's settings: what an application passes to createRouter, the check they pass before the
// router opens a connection, and what they say about each side (for messages).
import type pg from 'pg';
import type { Registry } from 'prom-client';
import type { SyncHooks } from '../db/sync';
import type { Logger } from '../db/logger';
import type { StageWatcherOptions } from '../db/stage-store';
import type { ConnectionName } from '../model/connections';
import type { CircuitBreakerOptions } from './circuit-breaker';
import type { DiscrepancyQueueOptions, DiscrepancySink, TemporalClientLike } from './discrepancy-queue';
import { RouterError } from './errors';
import type { WrittenKeys } from './mirror';
import type { ShadowOptions } from './shadow';

export interface RouterOptions {
  /** The migration whose stage this router follows. */
  migration: string;
  old: pg.PoolConfig;
  new: pg.PoolConfig;
  /** Unique per process; shown by `migrate routers` (default host-pid-random). */
  routerId?: string;
  logger?: Logger;
  /** Register the metrics here (one router per registry) instead of in the router's own registry. */
  registry?: Registry;
  /**
   * Where discrepancies go: the migration's reconciliation workflow, through the application's
   * Temporal client (`workflowId` defaults to the one the migration workflow runs).
   */
  reconciliation?: { client: TemporalClientLike; workflowId?: string } | DiscrepancySink;
  /** How long a request waits for its mirror, in ms (default 250). */
  mirrorTimeoutMs?: number;
  /**
   * Whether every write waits for its mirror. By default a write waits only once reads may go to the
   * side it is mirrored to (`shadow`, `live`); in `dual_write` it answers after the authoritative
   * commit and its mirror follows (router.mirrorsSettled() waits for those running).
   */
  awaitMirrors?: boolean;
  /**
   * How long a mirror no write waits for (`dual_write`, and after the switch) waits for more writes
   * of its table to go with it, in ms, when none of its table runs (default 10; 0: at once).
   */
  mirrorDelayMs?: number;
  /** Mirrors that may run without the application waiting for them; beyond, a write waits (default 64). */
  maxPendingMirrors?: number;
  /** Connections per side the mirrors use (default 4). */
  mirrorPoolSize?: number;
  /** How long a write waits for the write switch's fence to lift before it fails, in ms (default 30000). */
  fenceWaitMs?: number;
  circuitBreaker?: CircuitBreakerOptions;
  shadow?: ShadowOptions;
  discrepancies?: DiscrepancyQueueOptions;
  stageWatcher?: Omit<StageWatcherOptions, 'routerId'>;
  /** For tests only: pauses at the points where a crash or a race does harm. */
  testHooks?: {
    /** After the authoritative commit of a dual write, before its mirror. */
    afterAuthoritativeCommit?: (written: WrittenKeys) => Promise<void>;
    /** Inside a mirror, after it read the rows from the authoritative side, before it applies them. */
    afterMirrorRead?: SyncHooks['afterRowsRead'];
  };
}

export const SIDES: readonly ConnectionName[] = ['old', 'new'];

/** Throws a RouterError (BAD_OPTIONS) for settings the router cannot work with. */
export function checkRouterOptions(options: RouterOptions): void {
  if (typeof options.migration !== 'string' || options.migration === '') {
    throw new RouterError(
      'BAD_OPTIONS',
      'createRouter: `migration` must name the migration whose stage the router follows',
    );
  }
  const { maxPendingMirrors } = options;
  if (maxPendingMirrors !== undefined && !(Number.isInteger(maxPendingMirrors) && maxPendingMirrors >= 0)) {
    throw new RouterError(
      'BAD_OPTIONS',
      'createRouter: `maxPendingMirrors` must be a whole number of 0 or more (0: every write waits for its mirror)',
    );
  }
  const { mirrorDelayMs } = options;
  if (
    mirrorDelayMs !== undefined &&
    !(Number.isInteger(mirrorDelayMs) && mirrorDelayMs >= 0 && mirrorDelayMs <= 1000)
  ) {
    throw new RouterError(
      'BAD_OPTIONS',
      'createRouter: `mirrorDelayMs` must be a whole number of milliseconds from 0 to 1000 (0: a mirror runs at once)',
    );
  }
  for (const side of SIDES) {
    if (options[side] === null || typeof options[side] !== 'object') {
      throw new RouterError(
        'BAD_OPTIONS',
        `createRouter: \`${side}\` must be the pg.Pool settings of the ${side} database`,
      );
    }
    const { connectionString } = options[side];
    if (
      connectionString !== undefined &&
      looksLikeUrl(connectionString) &&
      parseUrl(connectionString) === undefined
    ) {
      // Never the string itself: it holds the password (and Node's own error keeps it whole).
      throw new RouterError(
        'BAD_OPTIONS',
        `createRouter: \`${side}.connectionString\` is not a URL such as postgres://user:password@host:5432/db (check its host, port and that special characters in the password are percent-encoded)`,
      );
    }
  }
}

/**
 * The URL, or undefined when `text` is not a valid one; never throws (Node's error would carry the
 * text whole). pg's other forms (a socket path) pass.
 */
function parseUrl(text: unknown): URL | undefined {
  if (typeof text !== 'string') return undefined;
  try {
    return new URL(text);
  } catch {
    return undefined;
  }
}

function looksLikeUrl(text: unknown): boolean {
  return typeof text !== 'string' || /^[a-z][a-z0-9+.-]*:/i.test(text);
}

function decoded(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** Where a side's settings point (host:port), and as whom to which database, for messages. */
export function describeSide(config: pg.PoolConfig): { where: string; user: string; database: string } {
  const url = config.connectionString === undefined ? undefined : parseUrl(config.connectionString);
  if (url !== undefined) {
    const user = decoded(url.username);
    return {
      where: `${url.hostname}:${url.port || '5432'}`,
      user,
      database: decoded(url.pathname.slice(1)) || user,
    };
  }
  return {
    where: `${config.host ?? 'localhost'}:${config.port ?? 5432}`,
    user: config.user ?? '',
    database: config.database ?? config.user ?? '',
  };
}
