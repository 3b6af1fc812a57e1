// Runs one activity function outside a worker, in Temporal's mock activity context (heartbeats and
// cancellation work), against whatever real databases its pools point at.
import { MockActivityEnvironment } from '@temporalio/testing';

export function runActivity<A extends unknown[], R>(fn: (...args: A) => Promise<R>, ...args: A): Promise<R> {
  return new MockActivityEnvironment().run<A, R, typeof fn>(fn, ...args);
}
