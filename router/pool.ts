// The router as the application holds it: a drop-in for pg.Pool (query, connect, end, its events
// and counts) that follows the migration's stage. It builds the parts (a pool per side, the
// mirror's and the stage watcher's own pools, circuit breaker, discrepancy queue, mirror, shadow
// reads, write fence), starts following the stage, and hands each statement to the statement runner
// (statements.ts), each checked-out client a RouterClient (client.ts).
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import pg from 'pg';
import { describeDatabaseError } from '../db/database-errors';
import { createLogger, type Logger } from '../db/logger';
import { SESSION_OPTIONS, type NamedPools } from '../db/pools';
import { readStage, StageWatcher } from '../db/stage-store';
import { createSync } from '../db/sync';
import { TableShapes } from '../db/table-shapes';
import type { ConnectionName } from '../model/connections';
import { reconciliationWorkflowId } from '../model/ids';
import type { StageState } from '../model/stages';
import {
  parseCall,
  RouteScope,
  settle,
  type QueryCallback,
  type RouteContext,
  type RouterQueryConfig,
} from './calls';
import { CircuitBreaker, type CircuitState } from './circuit-breaker';
import { RouterClient } from './client';
import { DiscrepancyQueue, reconciliationSink } from './discrepancy-queue';
import { RouterError } from './errors';
import { FENCE_WAIT_MS, WriteFence } from './fence';
import { RouterMetrics } from './metrics';
import { MirroredEntries } from './forget';
import { MIRROR_DELAY_MS, Mirror } from './mirror';
import { PendingMirrors } from './pending-mirrors';
import { checkRouterOptions, describeSide, SIDES, type RouterOptions } from './options';
import { SessionKeys } from './session-keys';
import { ShadowReads } from './shadow';
import { stagePlan } from './stage-plan';
import { StatementRunner } from './statements';

const POOL_EVENTS = ['connect', 'acquire', 'release', 'remove'] as const;
/** What old answers when no migration has prepared its helpers there yet (no table, no schema). */
const MISSING_HELPERS = new Set(['42P01', '3F000']);

type ConnectCallback = (err: Error | undefined, client?: RouterClient, done?: (err?: Error) => void) => void;

/** Starts a router: reads the stage before it returns, so its first statement already follows it. */
export async function createRouter(options: RouterOptions): Promise<MigrationRouter> {
  checkRouterOptions(options);
  const router = new MigrationRouter(options);
  try {
    await router.start();
  } catch (err) {
    await router.end();
    throw err;
  }
  return router;
}

function joinOptions(options: string | undefined, more: string): string {
  return options === undefined || options === '' ? more : `${options} ${more}`;
}

export class MigrationRouter extends EventEmitter {
  readonly routerId: string;
  readonly options: RouterOptions;
  readonly metrics: RouterMetrics;
  private readonly pools: Record<ConnectionName, pg.Pool>;
  private readonly mirrorPools: Record<ConnectionName, pg.Pool>;
  private readonly stagePool: pg.Pool;
  private readonly watcher: StageWatcher;
  private readonly breaker: CircuitBreaker;
  private readonly queue: DiscrepancyQueue;
  private readonly shapes: TableShapes;
  private readonly mirrored: MirroredEntries;
  private readonly mirror: Mirror;
  private readonly fence: WriteFence;
  private readonly pendingMirrors: PendingMirrors;
  private readonly statements: StatementRunner;
  private readonly logger: Logger;
  private readonly scope = new RouteScope();
  private ended: Promise<void> | undefined;

  constructor(options: RouterOptions) {
    super();
    this.options = options;
    this.routerId = options.routerId ?? `${hostname()}-${process.pid}-${randomUUID().slice(0, 8)}`;
    this.logger = (
      options.logger ??
      createLogger({ name: 'router', level: process.env.LOG_LEVEL ?? 'warn', pretty: false })
    ).child({
      migration: options.migration,
      router: this.routerId,
    });
    this.metrics = new RouterMetrics(
      { migration: options.migration, router: this.routerId },
      options.registry,
    );
    const mirrorTimeoutMs = options.mirrorTimeoutMs ?? 250;
    this.pools = { old: new pg.Pool(options.old), new: new pg.Pool(options.new) };
    for (const side of SIDES) {
      for (const event of POOL_EVENTS) {
        this.pools[side].on(event, (...args: unknown[]) => this.emit(event, ...args));
      }
      // An idle connection that dies (a server restarting or stopped) is passed on like pg.Pool does,
      // but with no 'error' listener it is logged instead of crashing the application: a stopped
      // new must never take the application down.
      this.pools[side].on('error', (err, client) => {
        if (this.listenerCount('error') > 0) this.emit('error', err, client);
        else this.logger.warn({ err, side }, `an idle connection to ${side} was lost`);
      });
    }
    // The mirror's own sessions read and write keys as text in one form (see db/pools.ts).
    const internal = (side: ConnectionName, max: number, purpose: string) => {
      const pool = new pg.Pool({
        ...options[side],
        max,
        options: joinOptions(options[side].options, SESSION_OPTIONS),
        application_name: `pg-live-migrate router ${purpose}`,
        connectionTimeoutMillis: mirrorTimeoutMs,
      });
      pool.on('error', () => undefined);
      return pool;
    };
    const mirrorPoolSize = options.mirrorPoolSize ?? 4;
    this.mirrorPools = {
      old: internal('old', mirrorPoolSize, 'mirror'),
      new: internal('new', mirrorPoolSize, 'mirror'),
    };
    this.stagePool = internal('old', 2, 'stage');
    this.watcher = new StageWatcher(this.stagePool, options.migration, {
      ...options.stageWatcher,
      routerId: this.routerId,
      stats: () => this.metrics.publishStats(),
    });
    this.fence = new WriteFence(this.watcher, this.metrics, options.fenceWaitMs ?? FENCE_WAIT_MS);
    this.breaker = new CircuitBreaker(options.circuitBreaker, (state) => {
      this.metrics.circuit(state === 'open');
      if (state !== 'half-open') {
        this.logger.warn(`circuit to the non-authoritative side is ${state}`);
      }
    });
    const sink =
      options.reconciliation === undefined
        ? undefined
        : 'send' in options.reconciliation
          ? options.reconciliation
          : reconciliationSink(
              options.reconciliation.client,
              options.reconciliation.workflowId ?? reconciliationWorkflowId(options.migration),
            );
    this.queue = new DiscrepancyQueue(sink, this.logger, this.metrics, options.discrepancies);
    const named: NamedPools = {
      get: (name) => this.mirrorPools[name],
      display: (name) => `${name} (${describeSide(options[name]).where})`,
    };
    this.shapes = new TableShapes(named);
    const syncer = createSync(named, this.shapes, {
      afterRowsRead: options.testHooks?.afterMirrorRead,
    });
    this.mirrored = new MirroredEntries(options.migration, this.mirrorPools, this.logger);
    const mirror = (this.mirror = new Mirror({
      migration: options.migration,
      mirrorKeys: syncer.mirrorKeys,
      applied: (from, entries) => this.mirrored.applied(from, entries),
      breaker: this.breaker,
      queue: this.queue,
      metrics: this.metrics,
      logger: this.logger,
      timeoutMs: mirrorTimeoutMs,
      // While the switch's fence is up it waits for these mirrors: none waits for company then.
      delayMs: () => (this.watcher.current.fenced ? 0 : (options.mirrorDelayMs ?? MIRROR_DELAY_MS)),
    }));
    this.pendingMirrors = new PendingMirrors(options.maxPendingMirrors, (count) =>
      this.metrics.pendingMirrors(count),
    );
    this.statements = new StatementRunner({
      pools: this.pools,
      stage: () => this.watcher.current,
      scope: this.scope,
      fence: this.fence,
      breaker: this.breaker,
      mirror,
      keys: new SessionKeys(this.metrics, this.logger),
      pending: this.pendingMirrors,
      awaitMirrors: options.awaitMirrors ?? false,
      shadow: new ShadowReads(options.shadow ?? {}, this.breaker, this.metrics, this.logger),
      metrics: this.metrics,
      logger: this.logger,
      testHooks: options.testHooks,
    });
  }

  /** Reads the stage (refusing to start when old cannot be read) and starts following it. */
  async start(): Promise<void> {
    try {
      await readStage(this.stagePool, this.options.migration);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === undefined || !MISSING_HELPERS.has(code)) {
        const side = describeSide(this.options.old);
        throw new RouterError(
          'OLD_UNREADABLE',
          `router cannot read the migration stage: ${describeDatabaseError('old', side.where, 'the router’s old settings', side.user, side.database, err)}`,
          { cause: err },
        );
      }
      // No migration has been prepared on old yet: the stage is `off` until one is.
    }
    this.watcher.on('change', (state: StageState) => {
      // A stage change is also when an accepted schema change takes effect: read the tables again.
      this.shapes.forget();
      // The switch's fence waits for the mirrors no write waits for: none waits out its delay.
      if (state.fenced) this.mirror.hurry();
      this.fence.stageChanged();
      this.metrics.stage(state.stage, state.version);
      this.logger.info(
        { stage: state.stage, readPercent: state.readPercent, version: state.version },
        'stage changed',
      );
      this.emit('stage', state);
    });
    this.watcher.on('error-seen', (err) => this.logger.debug({ err }, 'stage store not readable'));
    const state = await this.watcher.start();
    this.metrics.stage(state.stage, state.version);
    this.fence.acknowledgeIfIdle();
  }

  /** The stage this router follows now. */
  get stage(): StageState {
    return this.watcher.current;
  }

  get circuit(): CircuitState {
    return this.breaker.state;
  }

  get pendingDiscrepancyKeys(): number {
    return this.queue.pendingKeys;
  }

  get totalCount(): number {
    return this.pools.old.totalCount + this.pools.new.totalCount;
  }

  get idleCount(): number {
    return this.pools.old.idleCount + this.pools.new.idleCount;
  }

  get waitingCount(): number {
    return this.pools.old.waitingCount + this.pools.new.waitingCount;
  }

  get ending(): boolean {
    return this.ended !== undefined;
  }

  /** Runs `work` with a routing key or intent for every statement it makes (ORMs need not pass them). */
  withContext<T>(context: RouteContext, work: () => T): T {
    return this.scope.run(context, work);
  }

  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string | RouterQueryConfig,
    values?: readonly unknown[],
  ): Promise<pg.QueryResult<R>>;
  query(text: string | RouterQueryConfig, callback: QueryCallback): void;
  query(
    text: string | RouterQueryConfig,
    values: readonly unknown[] | undefined,
    callback: QueryCallback,
  ): void;
  query<T extends pg.Submittable>(submittable: T): T;
  query(...args: unknown[]): unknown {
    const call = parseCall(args);
    if (!('config' in call)) return this.pools[stagePlan(this.stage.stage).authoritative].query(call);
    return settle(this.execute(call.config), call.callback);
  }

  /** A client on the authoritative side: transactions run there whole; see RouterClient. */
  connect(): Promise<RouterClient>;
  connect(callback: ConnectCallback): void;
  connect(callback?: ConnectCallback): Promise<RouterClient> | void {
    const side = stagePlan(this.stage.stage).authoritative;
    const work = this.pools[side].connect().then((session) => new RouterClient(this, session, side));
    if (callback === undefined) return work;
    work.then(
      (client) => callback(undefined, client, (err) => client.release(err)),
      (err: Error) => callback(err),
    );
  }

  /** @internal A session for a checked-out client that moves to the new authoritative side. */
  sessionOn(side: ConnectionName): Promise<pg.PoolClient> {
    return this.pools[side].connect();
  }

  /** Writes and transactions in flight now, with the mirrors no request waits for: the fence waits for these. */
  get writesInFlight(): number {
    return this.fence.inFlight;
  }

  /** Mirrors running now that no request waits for (see RouterOptions.awaitMirrors). */
  get pendingMirrorCount(): number {
    return this.pendingMirrors.count;
  }

  /** Resolves when every write answered so far has been mirrored (or its mirror failed or timed out). */
  mirrorsSettled(): Promise<void> {
    this.mirror.hurry();
    return this.pendingMirrors.settled();
  }

  /** Sends queued discrepancies now (they are also sent every flush interval). */
  flushDiscrepancies(): Promise<void> {
    return this.queue.flush();
  }

  /** Stops following the stage, sends queued discrepancies and closes every connection; idempotent. */
  end(): Promise<void> {
    this.ended ??= (async () => {
      await this.watcher.stop().catch(() => undefined);
      // Mirrors still running finish first (each within its timeout); a failed one queues its keys.
      this.mirror.hurry();
      await this.pendingMirrors.settled();
      await this.queue.stop();
      await this.mirrored.flush();
      await Promise.all(
        [...Object.values(this.pools), ...Object.values(this.mirrorPools), this.stagePool].map((pool) =>
          pool.end().catch(() => undefined),
        ),
      );
    })();
    return this.ended;
  }

  /** Runs one statement for the application, on a pool or on a checked-out client's session. */
  execute(config: RouterQueryConfig, client?: RouterClient): Promise<pg.QueryResult> {
    return this.statements.run(config, client);
  }
}
