// A client checked out of the router (router.connect()): a session on the authoritative side that
// transactions run on whole, moved to the new authoritative side between transactions after the
// write switch, and holding the router's write fence for as long as its transaction is open.
import { EventEmitter } from 'node:events';
import type pg from 'pg';
import type { ConnectionName } from '../model/connections';
import { parseCall, settle, type QueryCallback, type RouterQueryConfig } from './calls';

/** What a checked-out client asks of the router it came from. */
export interface ClientHost {
  /** Runs one statement of the application for this client (see MigrationRouter.execute). */
  execute(config: RouterQueryConfig, client: RouterClient): Promise<pg.QueryResult>;
  /** A fresh session on `side`. */
  sessionOn(side: ConnectionName): Promise<pg.PoolClient>;
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
    private readonly router: ClientHost,
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
  query(text: string | RouterQueryConfig, callback: QueryCallback): void;
  query(
    text: string | RouterQueryConfig,
    values: readonly unknown[] | undefined,
    callback: QueryCallback,
  ): void;
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
