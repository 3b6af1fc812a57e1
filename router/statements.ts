// Runs one statement of the application where the stage says. Reads and writes are told apart
// (db/classify.ts, or the application's explicit intent); writes and transactions run on the
// authoritative side, behind the write fence, and are then mirrored to the other side (mirror.ts):
// the application waits for the mirror while reads may go to that side (`live`), and in `dual_write`
// and `shadow` the mirror follows off its path (pending-mirrors.ts); reads go where the stage says,
// with a sample compared on new in `shadow` once the mirrors before it landed (shadow.ts) and a
// sticky share served by new in `live`. While old is
// authoritative, new never fails a request: a failed mirror is queued as a discrepancy, and a read
// on new that fails is answered by old.
import type pg from 'pg';
import type { Logger } from '../db/logger';
import { statementInfo, type StatementInfo } from '../db/statement-info';
import type { ConnectionName } from '../model/connections';
import type { StageState } from '../model/stages';
import type { RouteScope, RouterQueryConfig } from './calls';
import type { CircuitBreaker } from './circuit-breaker';
import type { RouterClient } from './client';
import type { WriteFence } from './fence';
import type { RouterMetrics } from './metrics';
import type { Mirror } from './mirror';
import type { RouterOptions } from './options';
import type { PendingMirrors } from './pending-mirrors';
import type { SessionKeys } from './session-keys';
import type { ShadowReads } from './shadow';
import { readsFromNew, stagePlan, type StagePlan } from './stage-plan';

export interface StatementRunnerParts {
  /** The application's pools, one per side. */
  pools: Record<ConnectionName, pg.Pool>;
  /** The stage the router follows now. */
  stage: () => StageState;
  scope: RouteScope;
  fence: WriteFence;
  breaker: CircuitBreaker;
  mirror: Mirror;
  /** The keys each of the router's sessions wrote. */
  keys: SessionKeys;
  /** Mirrors the application did not wait for. */
  pending: PendingMirrors;
  /** Whether every write waits for its mirror, also when no read can see it yet. */
  awaitMirrors: boolean;
  shadow: ShadowReads;
  metrics: RouterMetrics;
  logger: Logger;
  testHooks: RouterOptions['testHooks'];
}

export class StatementRunner {
  constructor(private readonly parts: StatementRunnerParts) {}

  /** Runs one statement for the application, on a pool or on a checked-out client's session. */
  run(call: RouterQueryConfig, client?: RouterClient): Promise<pg.QueryResult> {
    const { pools, metrics } = this.parts;
    const { config, routingKey, intent } = this.parts.scope.resolve(call);
    const { stage, readPercent } = this.parts.stage();
    const plan = stagePlan(stage);
    const info = statementInfo(config.text);
    const session = client?.session;
    const inTransaction = session !== undefined && session.getTransactionStatus() !== 'I';
    if (!inTransaction && (intent ?? info.kind) === 'read') {
      // A client's session serves its reads while it is on the authoritative side (not, say, after
      // the switch moved authority while the client sat idle).
      const onAuthoritative = () =>
        session !== undefined && client?.side === plan.authoritative ? session : pools[plan.authoritative];
      if (plan.mirrorTo === null && !plan.shadow && plan.reads === plan.authoritative) {
        return metrics.time(plan.authoritative, 'read', () => onAuthoritative().query(config));
      }
      return this.read(config, info, plan, readsFromNewNow(plan, readPercent, routingKey), onAuthoritative);
    }
    return this.fencedWrite(config, client);
  }

  /**
   * A write, or any statement of a transaction, behind the write fence: while the fence is up a new
   * write (or transaction) waits; one in flight counts until it is done (a transaction: until the
   * session is idle again), and the fence is acknowledged when none is.
   */
  private async fencedWrite(config: pg.QueryConfig, client?: RouterClient): Promise<pg.QueryResult> {
    const leave = client?.holdsWriteSlot === true ? undefined : await this.parts.fence.enter();
    if (client !== undefined && leave !== undefined) client.holdWriteSlot(leave);
    try {
      // After the wait the stage may have moved on (the switch): read it again.
      const plan = stagePlan(this.parts.stage().stage);
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

  private async read(
    config: pg.QueryConfig,
    info: StatementInfo,
    plan: StagePlan,
    fromNew: boolean,
    onAuthoritative: () => pg.Pool | pg.PoolClient,
  ): Promise<pg.QueryResult> {
    const { pools, breaker, metrics, logger } = this.parts;
    if (fromNew && plan.authoritative !== 'new') {
      if (breaker.allow()) {
        try {
          const result = await metrics.time('new', 'read', () => pools.new.query(config));
          breaker.success();
          return result;
        } catch (err) {
          breaker.failure();
          logger.warn({ fingerprint: info.fingerprint, err }, 'read on new failed; old answered it');
        }
      }
    }
    const result = await metrics.time(plan.authoritative, 'read', () => onAuthoritative().query(config));
    if (plan.shadow) {
      // The comparison reads new once the mirrors this router had running at the read landed.
      const landed = this.parts.pending.landed();
      this.parts.shadow.sample(
        info,
        result,
        async () => {
          await landed;
          return metrics.time('new', 'shadow', () => pools.new.query(config));
        },
        () => pools.old.query(config),
      );
    }
    return result;
  }

  private async write(
    config: pg.QueryConfig,
    plan: StagePlan,
    session?: pg.PoolClient,
  ): Promise<pg.QueryResult> {
    const { pools, breaker, metrics, pending, fence } = this.parts;
    const side = plan.authoritative;
    if (plan.mirrorTo === null) {
      return metrics.time(side, 'write', () => (session ?? pools[side]).query(config));
    }
    // While the circuit is open no mirror is tried, so the keys are not even asked for: the write
    // costs what it costs without the router, and the change log brings its keys to the other side.
    // A session's keys keep being noted meanwhile; the first mirror after the outage carries them.
    const mirroring = breaker.allow(false);
    if (!mirroring) {
      metrics.mirror('circuit_open');
      return metrics.time(side, 'write', () => (session ?? pools[side]).query(config));
    }
    const { keys } = this.parts;
    const client = session ?? (await pools[side].connect());
    let result: pg.QueryResult;
    try {
      if (client.getTransactionStatus() === 'I') await keys.collect(client);
      const mark = keys.beforeStatement(client);
      result = await metrics.time(side, 'write', () => client.query(config));
      keys.afterStatement(client, mark, result);
    } catch (err) {
      keys.afterFailure(client);
      if (session === undefined) client.release(err as Error);
      throw err;
    }
    if (client.getTransactionStatus() !== 'I') {
      // Inside a transaction: its keys are mirrored after its COMMIT.
      if (session === undefined) client.release();
      return result;
    }
    // Outside a transaction now (an autocommit write, or the COMMIT of one): mirror what committed.
    const waits = this.parts.awaitMirrors || !plan.mirrorsMayTrail || !pending.hasRoom;
    // The keys are taken at once (and the setting, when it may hold some, asked for before any later
    // statement of the session).
    const mirrored = this.mirrorCommitted(client, session === undefined, side, plan.mirrorTo, waits);
    if (waits) await mirrored;
    else pending.track(mirrored, fence.hold());
    return result;
  }

  /**
   * Takes the keys the session committed (then hands a session of the router's pool back) and
   * mirrors them to `to`; never rejects.
   */
  private async mirrorCommitted(
    client: pg.PoolClient,
    pooled: boolean,
    from: ConnectionName,
    to: ConnectionName,
    applicationWaits: boolean,
  ): Promise<void> {
    const written = await this.parts.keys.take(client);
    if (pooled) client.release();
    if (written.overflow || written.tables.length > 0) {
      await this.parts.testHooks?.afterAuthoritativeCommit?.(written);
      await this.parts.mirror.mirror(from, to, written, applicationWaits);
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
