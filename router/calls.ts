// The calling forms the router accepts, as pg.Pool and pg.Client do: `query(text, values, callback)`
// and its shorter forms, query configs, submittables, and a promise or a callback for the outcome;
// and the routing context (routing key, intent) a call or a withContext scope adds to a statement.
import { AsyncLocalStorage } from 'node:async_hooks';
import type pg from 'pg';
import type { StatementKind } from '../db/classify';
import { RouterError } from './errors';

/** What the application may tell the router about a statement, per call or for a scope (withContext). */
export interface RouteContext {
  /** Keeps one user (or tenant) on one side in `live`: the same key always gets the same answer. */
  routingKey?: string | number;
  /** Overrides the classification: 'write' pins a read to the authoritative side; 'read' allows a write-looking statement to be routed as a read. */
  intent?: StatementKind;
}

export type RouterQueryConfig = (pg.QueryConfig<unknown[]> | pg.QueryArrayConfig<unknown[]>) & RouteContext;
export type QueryCallback = (err: Error | null, result?: pg.QueryResult) => void;

/** One call of `query`, in one form whichever form it came in. */
export interface Call {
  config: RouterQueryConfig;
  callback: QueryCallback | undefined;
}

/** Reads the arguments of `query`; a submittable (a cursor, a stream) is returned as it is. */
export function parseCall(args: unknown[]): Call | pg.Submittable {
  const [first, second, third] = args;
  // Runs for every statement: no array or closure made to find the callback.
  const callback =
    typeof second === 'function'
      ? (second as QueryCallback)
      : typeof third === 'function'
        ? (third as QueryCallback)
        : undefined;
  const values = Array.isArray(second) ? (second as unknown[]) : undefined;
  if (typeof first === 'string') return { config: { text: first, values }, callback };
  if (first !== null && typeof first === 'object') {
    if (typeof (first as pg.Submittable).submit === 'function') return first as pg.Submittable;
    const config = first as RouterQueryConfig;
    if (typeof config.text === 'string') {
      return { config: values === undefined ? config : { ...config, values }, callback };
    }
  }
  throw new RouterError('BAD_QUERY', 'query needs SQL text or a query config with `text`');
}

/** The outcome as pg gives it: the promise without a callback, else to the callback (and undefined). */
export function settle<T>(work: Promise<T>, callback: ((err: Error | null, result?: T) => void) | undefined) {
  if (callback === undefined) return work;
  work.then(
    (result) => callback(null, result),
    (err: Error) => callback(err),
  );
  return undefined;
}

/** A statement as pg runs it, with the routing context it came with (its own, else its scope's). */
export interface RoutedStatement {
  config: pg.QueryConfig;
  routingKey: string | number | undefined;
  intent: StatementKind | undefined;
}

/** The routing context of withContext scopes: it follows the async work started inside them. */
export class RouteScope {
  private readonly storage = new AsyncLocalStorage<RouteContext>();

  /** Runs `work` with `context` over the enclosing scope's. */
  run<T>(context: RouteContext, work: () => T): T {
    return this.storage.run({ ...this.storage.getStore(), ...context }, work);
  }

  /** Splits a call's config into what pg runs and how to route it; the call's own context wins. */
  resolve(config: RouterQueryConfig): RoutedStatement {
    const scoped = this.storage.getStore();
    // Most statements come with no context: pg gets their config as it is, not a copy.
    if (scoped === undefined && !('routingKey' in config) && !('intent' in config)) {
      return { config, routingKey: undefined, intent: undefined };
    }
    const { routingKey, intent, ...pgConfig } = { ...scoped, ...config };
    return { config: pgConfig, routingKey, intent };
  }
}
