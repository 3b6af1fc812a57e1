// The router: a drop-in for pg.Pool that follows the migration's stage. Reads and writes are told
// apart (classify.ts, or the application's explicit intent); writes and transactions run on the
// authoritative side and are then mirrored to the other side (mirror.ts); reads go where the stage
// says, with a sample compared on new in `shadow` (shadow.ts) and a sticky share served by new in
// `live`. While old is authoritative, new never fails a request: a failed mirror is queued as a
// discrepancy, and a read on new that fails is answered by old.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { hostname } from 'node:os';
import pg from 'pg';
import type { Registry } from 'prom-client';
import { COLLECT_SETTING, WRITTEN_SETTING } from '../db/helper-schema';
import { SESSION_OPTIONS, type NamedPools } from '../db/pools';
import { createSync, type SyncHooks } from '../db/sync';
import { TableShapes } from '../db/table-shapes';
import { describeDatabaseError } from '../db/database-errors';
import type { ConnectionName } from '../model/connections';
import { createLogger, type Logger } from '../db/logger';
import { reconciliationWorkflowId } from '../model/ids';
import type { StatementKind } from '../db/classify';
import { CircuitBreaker, type CircuitBreakerOptions, type CircuitState } from './circuit-breaker';
import {
  DiscrepancyQueue,
  reconciliationSink,
  type DiscrepancyQueueOptions,
  type DiscrepancySink,
  type TemporalClientLike,
} from './discrepancy-queue';
import { RouterMetrics } from './metrics';
import { Mirror, NOTHING_WRITTEN, parseWrittenKeys, type WrittenKeys } from './mirror';
import { ShadowReads, type ShadowOptions } from './shadow';
import { readsFromNew, stagePlan, type StagePlan } from './stage-plan';
import { readStage, StageWatcher, type StageWatcherOptions } from '../db/stage-store';
import type { StageState } from '../model/stages';
import { statementInfo, type StatementInfo } from '../db/statement-info';

/** What the application may tell the router about a statement, per call or for a scope (withContext). */
export interface RouteContext {
  /** Keeps one user (or tenant) on one side in `live`: the same key always gets the same answer. */
  routingKey?: string | number;
  /** Overrides the classification: 'write' pins a read to the authoritative side; 'read' allows a write-looking statement to be routed as a read. */
  intent?: StatementKind;
}

export type RouterQueryConfig = (pg.QueryConfig<unknown[]> | pg.QueryArrayConfig<unknown[]>) & RouteContext;
type Callback = (err: Error | null, result?: pg.QueryResult) => void;

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

const SIDES: ConnectionName[] = ['old', 'new'];
const POOL_EVENTS = ['connect', 'acquire', 'release', 'remove'] as const;
const MISSING_HELPERS = new Set(['42P01', '3F000']);

interface Call {
  config: RouterQueryConfig;
  callback: Callback | undefined;
}

function parseCall(args: unknown[]): Call | pg.Submittable {
  const [first, second, third] = args;
  const callback = [second, third].find((arg): arg is Callback => typeof arg === 'function');
  const values = Array.isArray(second) ? (second as unknown[]) : undefined;
  if (typeof first === 'string') return { config: { text: first, values }, callback };
  if (first !== null && typeof first === 'object') {
    if (typeof (first as pg.Submittable).submit === 'function') return first as pg.Submittable;
    const config = first as RouterQueryConfig;
    if (typeof config.text === 'string') {
      return { config: values === undefined ? config : { ...config, values }, callback };
    }
  }
  throw new TypeError('query needs SQL text or a query config with `text`');
}

function settle<T>(work: Promise<T>, callback: ((err: Error | null, result?: T) => void) | undefined) {
  if (callback === undefined) return work;
  work.then(
    (result) => callback(null, result),
    (err: Error) => callback(err),
  );
  return undefined;
}

function joinOptions(options: string | undefined, more: string): string {
  return options === undefined || options === '' ? more : `${options} ${more}`;
}

function describeSide(config: pg.PoolConfig): { where: string; user: string; database: string } {
  if (config.connectionString !== undefined) {
    const url = new URL(config.connectionString);
    const user = decodeURIComponent(url.username);
    return {
      where: `${url.hostname}:${url.port || '5432'}`,
      user,
      database: decodeURIComponent(url.pathname.slice(1)) || user,
    };
  }
  return {
    where: `${config.host ?? 'localhost'}:${config.port ?? 5432}`,
    user: config.user ?? '',
    database: config.database ?? config.user ?? '',
  };
}

/** Starts a router: reads the stage before it returns, so its first statement already follows it. */
export async function createRouter(options: RouterOptions): Promise<MigrationRouter> {
  if (typeof options.migration !== 'string' || options.migration === '') {
    throw new Error('createRouter: `migration` must name the migration whose stage the router follows');
  }
  for (const side of SIDES) {
    if (options[side] === null || typeof options[side] !== 'object') {
      throw new Error(`createRouter: \`${side}\` must be the pg.Pool settings of the ${side} database`);
    }
  }
  const router = new MigrationRouter(options);
  try {
    await router.start();
  } catch (err) {
    await router.end();
    throw err;
  }
  return router;
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
  private readonly mirror: Mirror;
  private readonly shapes: TableShapes;
  private readonly shadow: ShadowReads;
  private readonly logger: Logger;
  private readonly scope = new AsyncLocalStorage<RouteContext>();
  private readonly collecting = new WeakSet<pg.ClientBase>();
  private ended: Promise<void> | undefined;
  /** Writes (and transactions) of this router in flight: the fence is acknowledged at zero. */
  private writesInFlight = 0;
  private readonly fenceListeners = new Set<() => void>();

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
    // The mirror's own sessions read and write keys as text in one form (see activities/pools.ts).
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
      stats: () => this.metrics.stats,
    });
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
    this.mirror = new Mirror({
      migration: options.migration,
      mirrorKeys: syncer.mirrorKeys,
      breaker: this.breaker,
      queue: this.queue,
      metrics: this.metrics,
      logger: this.logger,
      timeoutMs: mirrorTimeoutMs,
    });
    this.shadow = new ShadowReads(options.shadow ?? {}, this.breaker, this.metrics, this.logger);
  }

  /** Reads the stage (refusing to start when old cannot be read) and starts following it. */
  async start(): Promise<void> {
    try {
      await readStage(this.stagePool, this.options.migration);
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === undefined || !MISSING_HELPERS.has(code)) {
        const side = describeSide(this.options.old);
        throw new Error(
          `router cannot read the migration stage: ${describeDatabaseError('old', side.where, 'the router’s old settings', side.user, side.database, err)}`,
          { cause: err },
        );
      }
      // No migration has been prepared on old yet: the stage is `off` until one is.
    }
    this.watcher.on('change', (state: StageState) => {
      // A stage change is also when an accepted schema change takes effect: read the tables again.
      this.shapes.forget();
      for (const listener of this.fenceListeners) listener();
      this.acknowledgeFenceIfIdle();
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
    this.acknowledgeFenceIfIdle();
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
    return this.scope.run({ ...this.scope.getStore(), ...context }, work);
  }

  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string | RouterQueryConfig,
    values?: readonly unknown[],
  ): Promise<pg.QueryResult<R>>;
  query(text: string | RouterQueryConfig, callback: Callback): void;
  query(text: string | RouterQueryConfig, values: readonly unknown[] | undefined, callback: Callback): void;
  query<T extends pg.Submittable>(submittable: T): T;
  query(...args: unknown[]): unknown {
    const call = parseCall(args);
    if (!('config' in call)) return this.pools[stagePlan(this.stage.stage).authoritative].query(call);
    return settle(this.execute(call.config), call.callback);
  }

  /** A client on the authoritative side: transactions run there whole; see RouterClient. */
  connect(): Promise<RouterClient>;
  connect(
    callback: (err: Error | undefined, client?: RouterClient, done?: (err?: Error) => void) => void,
  ): void;
  connect(
    callback?: (err: Error | undefined, client?: RouterClient, done?: (err?: Error) => void) => void,
  ): Promise<RouterClient> | void {
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

  /** Sends queued discrepancies now (they are also sent every flush interval). */
  flushDiscrepancies(): Promise<void> {
    return this.queue.flush();
  }

  /** Stops following the stage, sends queued discrepancies and closes every connection; idempotent. */
  end(): Promise<void> {
    this.ended ??= (async () => {
      await this.watcher.stop().catch(() => undefined);
      await this.queue.stop();
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
    const scoped = this.scope.getStore();
    const { routingKey, intent, ...pgConfig } =
      scoped === undefined && !('routingKey' in config) && !('intent' in config)
        ? config
        : { ...scoped, ...config };
    const { stage, readPercent } = this.watcher.current;
    const plan = stagePlan(stage);
    const info = statementInfo(pgConfig.text);
    const session = client?.session;
    const inTransaction = session !== undefined && session.getTransactionStatus() !== 'I';
    if (!inTransaction && (intent ?? info.kind) === 'read') {
      // A client's session serves its reads while it is on the authoritative side (not, say, after
      // the switch moved authority while the client sat idle).
      const onAuthoritative = () =>
        session !== undefined && client?.side === plan.authoritative
          ? session
          : this.pools[plan.authoritative];
      if (plan.mirrorTo === null && !plan.shadow && plan.reads === plan.authoritative) {
        return this.metrics.time(plan.authoritative, 'read', () => onAuthoritative().query(pgConfig));
      }
      return this.read(pgConfig, info, plan, readsFromNewNow(plan, readPercent, routingKey), onAuthoritative);
    }
    return this.fencedWrite(pgConfig, client);
  }

  /**
   * A write, or any statement of a transaction, behind the write fence: while the fence is up a new
   * write (or transaction) waits; one in flight counts until it is done (a transaction: until the
   * session is idle again), and the fence is acknowledged when none is.
   */
  private async fencedWrite(config: pg.QueryConfig, client?: RouterClient): Promise<pg.QueryResult> {
    const leave = client?.holdsWriteSlot === true ? undefined : await this.enterWrite();
    if (client !== undefined && leave !== undefined) client.holdWriteSlot(leave);
    try {
      // After the wait the stage may have moved on (the switch): read it again.
      const plan = stagePlan(this.watcher.current.stage);
      if (
        client !== undefined &&
        client.side !== plan.authoritative &&
        client.session.getTransactionStatus() === 'I'
      ) {
        await client.moveTo(plan.authoritative);
      }
      return await this.write(config, plan, client?.session);
    } finally {
      if (client === undefined) leave?.();
      else if (client.session.getTransactionStatus() === 'I') client.leaveWriteSlot();
    }
  }

  /** Waits while the fence is up, then counts a write in flight until the returned function runs. */
  private async enterWrite(): Promise<() => void> {
    if (this.watcher.current.fenced) {
      const started = process.hrtime.bigint();
      await this.fenceLifted();
      this.metrics.fenceWait(Number(process.hrtime.bigint() - started) / 1e9);
    }
    this.writesInFlight++;
    let left = false;
    return () => {
      if (left) return;
      left = true;
      this.writesInFlight--;
      this.acknowledgeFenceIfIdle();
    };
  }

  private fenceLifted(): Promise<void> {
    const waitMs = this.options.fenceWaitMs ?? 30_000;
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.fenceListeners.delete(check);
      };
      const check = () => {
        if (!this.watcher.current.fenced) {
          done();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `a write waited ${waitMs} ms for the migration's write switch to finish; the switch should have ended or aborted by now: check the migration's status`,
          ),
        );
      }, waitMs);
      this.fenceListeners.add(check);
      check();
    });
  }

  private acknowledgeFenceIfIdle(): void {
    const state = this.watcher.current;
    if (state.fenced && this.writesInFlight === 0) void this.watcher.acknowledgeFence(state.version);
  }

  private async read(
    config: pg.QueryConfig,
    info: StatementInfo,
    plan: StagePlan,
    fromNew: boolean,
    onAuthoritative: () => pg.Pool | pg.PoolClient,
  ): Promise<pg.QueryResult> {
    if (fromNew && plan.authoritative !== 'new') {
      if (this.breaker.allow()) {
        try {
          const result = await this.metrics.time('new', 'read', () => this.pools.new.query(config));
          this.breaker.success();
          return result;
        } catch (err) {
          this.breaker.failure();
          this.logger.warn({ fingerprint: info.fingerprint, err }, 'read on new failed; old answered it');
        }
      }
    }
    const result = await this.metrics.time(plan.authoritative, 'read', () => onAuthoritative().query(config));
    if (plan.shadow) {
      this.shadow.sample(
        info,
        result,
        () => this.metrics.time('new', 'shadow', () => this.pools.new.query(config)),
        () => this.pools.old.query(config),
      );
    }
    return result;
  }

  private async write(
    config: pg.QueryConfig,
    plan: StagePlan,
    session?: pg.PoolClient,
  ): Promise<pg.QueryResult> {
    const side = plan.authoritative;
    if (plan.mirrorTo === null) {
      return this.metrics.time(side, 'write', () => (session ?? this.pools[side]).query(config));
    }
    // While the circuit is open no mirror is tried, so the keys are not even asked for: the write
    // costs what it costs without the router, and the change log brings its keys to the other side.
    // A session's keys keep being noted meanwhile; the first mirror after the outage carries them.
    const mirroring = this.breaker.allow(false);
    if (!mirroring) {
      this.metrics.mirror('circuit_open');
      return this.metrics.time(side, 'write', () => (session ?? this.pools[side]).query(config));
    }
    const client = session ?? (await this.pools[side].connect());
    let result: pg.QueryResult;
    let written = NOTHING_WRITTEN;
    try {
      if (client.getTransactionStatus() === 'I') await this.collect(client);
      result = await this.metrics.time(side, 'write', () => client.query(config));
      // Outside a transaction now (an autocommit write, or the COMMIT of one): mirror what committed.
      if (client.getTransactionStatus() === 'I') written = await this.takeWritten(client);
    } catch (err) {
      if (session === undefined) client.release(err as Error);
      throw err;
    }
    if (session === undefined) client.release();
    if (written.overflow || written.tables.length > 0) {
      await this.options.testHooks?.afterAuthoritativeCommit?.(written);
      await this.mirror.mirror(side, plan.mirrorTo, written);
    }
    return result;
  }

  /** Asks the capture trigger to note this session's keys (once per session). */
  private async collect(client: pg.ClientBase): Promise<void> {
    if (this.collecting.has(client)) return;
    await client.query(`SET ${COLLECT_SETTING} = on`);
    this.collecting.add(client);
  }

  /** The keys the session committed since the last call, and clears them; never throws. */
  private async takeWritten(client: pg.ClientBase): Promise<WrittenKeys> {
    try {
      const { rows } = await client.query<{ written: string | null }>(
        `SELECT current_setting('${WRITTEN_SETTING}', true) AS written, set_config('${WRITTEN_SETTING}', '', false)`,
      );
      return parseWrittenKeys(rows[0]?.written ?? null);
    } catch (err) {
      // The write committed; only the mirror is lost, and the change log still holds the keys.
      this.logger.warn({ err }, 'could not read the keys a write committed; reconciliation brings them');
      return NOTHING_WRITTEN;
    }
  }
}

function readsFromNewNow(
  plan: StagePlan,
  readPercent: number,
  routingKey: string | number | undefined,
): boolean {
  if (plan.reads === 'percent') return readsFromNew(readPercent, routingKey);
  return plan.reads === 'new';
}

/**
 * A checked-out client. It holds a session on the side that was authoritative when it was checked
 * out; everything inside a transaction, and every write, runs on that session (and a write is
 * mirrored after its commit). A read outside a transaction follows the stage like `router.query`:
 * pass `intent: 'write'` (or use withContext) to keep a read on the session, e.g. after SET.
 */
export class RouterClient extends EventEmitter {
  private leaveSlot: (() => void) | undefined;

  constructor(
    private readonly router: MigrationRouter,
    private current: pg.PoolClient,
    private currentSide: ConnectionName,
  ) {
    super();
  }

  /** The session this client runs on now. */
  get session(): pg.PoolClient {
    return this.current;
  }

  get side(): ConnectionName {
    return this.currentSide;
  }

  get holdsWriteSlot(): boolean {
    return this.leaveSlot !== undefined;
  }

  /** @internal The router counts this client's transaction as a write in flight until it ends. */
  holdWriteSlot(leave: () => void): void {
    this.leaveSlot = leave;
  }

  /** @internal */
  leaveWriteSlot(): void {
    const leave = this.leaveSlot;
    this.leaveSlot = undefined;
    leave?.();
  }

  /**
   * @internal Between transactions, after the write switch: the next one must run on the new
   * authoritative side, so the idle session is swapped for one there.
   */
  async moveTo(side: ConnectionName): Promise<void> {
    const next = await this.router.sessionOn(side);
    this.current.release();
    this.current = next;
    this.currentSide = side;
  }

  query<R extends pg.QueryResultRow = pg.QueryResultRow>(
    text: string | RouterQueryConfig,
    values?: readonly unknown[],
  ): Promise<pg.QueryResult<R>>;
  query(text: string | RouterQueryConfig, callback: Callback): void;
  query(text: string | RouterQueryConfig, values: readonly unknown[] | undefined, callback: Callback): void;
  query<T extends pg.Submittable>(submittable: T): T;
  query(...args: unknown[]): unknown {
    const call = parseCall(args);
    if (!('config' in call)) return this.session.query(call);
    return settle(this.router.execute(call.config, this), call.callback);
  }

  release(err?: Error | boolean): void {
    this.leaveWriteSlot();
    this.current.release(err);
  }

  escapeIdentifier(value: string): string {
    return this.session.escapeIdentifier(value);
  }

  escapeLiteral(value: string): string {
    return this.session.escapeLiteral(value);
  }
}
