// Waiting for a state in tests, never for a duration: the bound only turns a hang into a failure.

export async function waitFor<T>(
  what: string,
  read: () => Promise<T>,
  ok: (value: T) => boolean = Boolean,
  attempts = 1200,
): Promise<T> {
  let last: T | undefined;
  for (let i = 0; i < attempts; i++) {
    last = await read();
    if (ok(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`gave up waiting for ${what}; last seen ${JSON.stringify(last)}`);
}

/** waitFor for a condition this process can see at once (a child's exit, a line in its output). */
export function waitUntil(what: string, check: () => boolean, attempts = 1200): Promise<boolean> {
  return waitFor(what, () => Promise.resolve(check()), Boolean, attempts);
}

/** Tracks whether a promise has settled, without waiting for it. */
export function watch<T>(work: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false;
  const promise = work.finally(() => (done = true));
  return { promise, settled: () => done };
}
