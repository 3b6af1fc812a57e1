// The router's own errors and the helpers around them, with no server: createRouter's check of its
// settings (BAD_OPTIONS) and its refusal to start when old cannot be read (OLD_UNREADABLE), the
// calling forms of `query` (BAD_QUERY for none of them) and the routing context, and the write
// fence: it holds a write while fenced, lets it go when the fence lifts, fails it after
// `fenceWaitMs` (FENCE_TIMEOUT), and acknowledges only when no write is in flight (a deferred
// mirror counting as one); and the bound on mirrors no write waits for.
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { describe, it } from 'node:test';
import { createRouter, RouterError, type RouterOptions } from '../../router';
import { parseCall, RouteScope, settle } from '../../router/calls';
import { WriteFence } from '../../router/fence';
import { RouterMetrics } from '../../router/metrics';
import { PendingMirrors } from '../../router/pending-mirrors';
import type { StageState } from '../../model/stages';
import { createLogger } from '../../db/logger';

function routerError(code: string, message: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof RouterError, `a RouterError, not ${String(err)}`);
    assert.equal(err.name, 'RouterError');
    assert.equal(err.code, code);
    assert.match(err.message, message);
    return true;
  };
}

/** A port nothing listens on (taken from the system, then given back). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('createRouter', () => {
  const logger = createLogger({ name: 'router', level: 'silent', pretty: false });

  it('refuses settings it cannot work with, before it opens a connection (BAD_OPTIONS)', async () => {
    const sides = { old: { host: 'old.invalid' }, new: { host: 'new.invalid' } };
    await assert.rejects(
      createRouter({ ...sides, migration: '' }),
      routerError('BAD_OPTIONS', /^createRouter: `migration` must name the migration/),
    );
    await assert.rejects(
      createRouter({ migration: 'm', new: sides.new } as unknown as RouterOptions),
      routerError('BAD_OPTIONS', /^createRouter: `old` must be the pg.Pool settings of the old database$/),
    );
    await assert.rejects(
      createRouter({ migration: 'm', old: sides.old, new: null } as unknown as RouterOptions),
      routerError('BAD_OPTIONS', /`new` must be the pg.Pool settings of the new database/),
    );
    for (const maxPendingMirrors of [-1, 1.5, Number.NaN]) {
      await assert.rejects(
        createRouter({ ...sides, migration: 'm', maxPendingMirrors }),
        routerError('BAD_OPTIONS', /`maxPendingMirrors` must be a whole number of 0 or more/),
      );
    }
    for (const mirrorDelayMs of [-1, 2.5, 1001, Number.NaN]) {
      await assert.rejects(
        createRouter({ ...sides, migration: 'm', mirrorDelayMs }),
        routerError('BAD_OPTIONS', /`mirrorDelayMs` must be a whole number of milliseconds from 0 to 1000/),
      );
    }
  });

  it('does not start when old cannot be read (OLD_UNREADABLE), with the cause kept', async () => {
    const port = await closedPort();
    const url = `postgres://app@127.0.0.1:${port}/shop`;
    await assert.rejects(
      createRouter({
        migration: 'm',
        old: { connectionString: url },
        new: { connectionString: url },
        logger,
      }),
      (err: unknown) => {
        routerError(
          'OLD_UNREADABLE',
          new RegExp(
            `^router cannot read the migration stage: old database at 127\\.0\\.0\\.1:${port} refuses`,
          ),
        )(err);
        assert.equal(((err as Error).cause as { code?: string }).code, 'ECONNREFUSED');
        return true;
      },
    );
  });
});

describe('query calling forms', () => {
  it('reads every form pg takes, and refuses a call with no SQL (BAD_QUERY)', () => {
    const callback = () => undefined;
    assert.deepEqual(parseCall(['SELECT 1']), {
      config: { text: 'SELECT 1', values: undefined },
      callback: undefined,
    });
    assert.deepEqual(parseCall(['SELECT $1', [1], callback]), {
      config: { text: 'SELECT $1', values: [1] },
      callback,
    });
    assert.deepEqual(parseCall(['SELECT 1', callback]), {
      config: { text: 'SELECT 1', values: undefined },
      callback,
    });
    assert.deepEqual(parseCall([{ text: 'SELECT $1', values: [1], rowMode: 'array' }, [2]]), {
      config: { text: 'SELECT $1', values: [2], rowMode: 'array' },
      callback: undefined,
    });
    const submittable = { submit: () => undefined };
    assert.equal(parseCall([submittable]), submittable);
    for (const wrong of [[], [42], [null], [{ values: [1] }]]) {
      assert.throws(
        () => parseCall(wrong),
        routerError('BAD_QUERY', /^query needs SQL text or a query config with `text`$/),
      );
    }
  });

  it('settles to a promise, or to the callback', async () => {
    assert.equal(await settle(Promise.resolve(1), undefined), 1);
    const outcomes: unknown[] = [];
    const failure = new Error('from the database');
    assert.equal(
      settle(Promise.resolve(2), (err, result) => outcomes.push([err, result])),
      undefined,
    );
    void settle(Promise.reject(failure), (err) => outcomes.push(err));
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(outcomes, [[null, 2], failure]);
    assert.equal(outcomes[1], failure, 'an error reaches the callback as it was raised');
  });

  it('routes by the call’s own context over its scope’s, scopes nesting', () => {
    const scope = new RouteScope();
    assert.deepEqual(scope.resolve({ text: 'SELECT 1' }), {
      config: { text: 'SELECT 1' },
      routingKey: undefined,
      intent: undefined,
    });
    scope.run({ routingKey: 'tenant-1' }, () =>
      scope.run({ intent: 'write' }, () => {
        assert.deepEqual(scope.resolve({ text: 'SELECT 1', values: [] }), {
          config: { text: 'SELECT 1', values: [] },
          routingKey: 'tenant-1',
          intent: 'write',
        });
        assert.deepEqual(scope.resolve({ text: 'SELECT 1', routingKey: 7, intent: 'read' }), {
          config: { text: 'SELECT 1' },
          routingKey: 7,
          intent: 'read',
        });
      }),
    );
  });
});

describe('write fence', () => {
  function fence(waitMs: number) {
    const watcher = {
      current: { stage: 'live', readPercent: 50, version: 1, fenced: false } as StageState,
      acknowledged: [] as number[],
      acknowledgeFence(version: number) {
        this.acknowledged.push(version);
        return Promise.resolve();
      },
    };
    const metrics = new RouterMetrics({ migration: 'm', router: 'r' });
    return { watcher, metrics, fence: new WriteFence(watcher, metrics, waitMs) };
  }

  it('fails a write that waited fenceWaitMs for the fence to lift (FENCE_TIMEOUT)', async () => {
    const { watcher, fence: writes } = fence(30);
    watcher.current = { ...watcher.current, version: 2, fenced: true };
    await assert.rejects(
      writes.enter(),
      routerError(
        'FENCE_TIMEOUT',
        /^a write waited 30 ms for the migration's write switch to finish; the switch should have ended or aborted by now: check the migration's status$/,
      ),
    );
    assert.equal(writes.inFlight, 0, 'a write that never got in does not count');
  });

  it('holds a write while fenced, lets it go when the fence lifts, and acknowledges only when idle', async () => {
    const { watcher, metrics, fence: writes } = fence(10_000);
    const leaveFirst = await writes.enter();
    watcher.current = { ...watcher.current, version: 2, fenced: true };
    writes.stageChanged();
    assert.deepEqual(watcher.acknowledged, [], 'a write in flight: no acknowledgement');
    let entered = false;
    const second = writes.enter().then((leave) => {
      entered = true;
      return leave;
    });
    leaveFirst();
    leaveFirst();
    assert.equal(writes.inFlight, 0, 'leaving twice counts once');
    assert.deepEqual(watcher.acknowledged, [2], 'acknowledged once the last write left');
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(entered, false, 'the new write waits at the fence');
    watcher.current = { ...watcher.current, version: 3, fenced: false };
    writes.stageChanged();
    const leaveSecond = await second;
    assert.equal(writes.inFlight, 1);
    leaveSecond();
    assert.deepEqual(watcher.acknowledged, [2], 'no fence, nothing to acknowledge');
    const waited = await metrics.registry.getSingleMetricAsString('live_migrate_router_fence_wait_seconds');
    assert.match(waited, /live_migrate_router_fence_wait_seconds_count\S* 1/);
  });

  it('a deferred mirror holds the fence from before its write leaves until it is done', async () => {
    const { watcher, fence: writes } = fence(10_000);
    const leaveWrite = await writes.enter();
    const leaveMirror = writes.hold();
    leaveWrite();
    watcher.current = { ...watcher.current, version: 2, fenced: true };
    writes.stageChanged();
    assert.equal(writes.inFlight, 1);
    assert.deepEqual(watcher.acknowledged, [], 'the mirror is still in flight');
    leaveMirror();
    leaveMirror();
    assert.equal(writes.inFlight, 0, 'leaving twice counts once');
    assert.deepEqual(watcher.acknowledged, [2]);
  });
});

describe('pending mirrors', () => {
  it('makes room up to the limit, waits for mirrors started meanwhile (settled) or not (landed), and never rejects', async () => {
    const pending = new PendingMirrors(2);
    const done: string[] = [];
    const release: Array<() => void> = [];
    const mirror = (name: string, fail = false) =>
      pending.track(
        new Promise<void>((resolve, reject) =>
          release.push(() => (fail ? reject(new Error(name)) : resolve())),
        ),
        () => done.push(name),
      );
    assert.equal(pending.hasRoom, true);
    mirror('a');
    mirror('b', true);
    assert.equal(pending.count, 2);
    assert.equal(pending.hasRoom, false, 'at the limit a write waits for its own mirror');
    let settled = false;
    const all = pending.settled().then(() => (settled = true));
    let landed = false;
    const before = pending.landed().then(() => (landed = true));
    release[0]!();
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(done, ['a']);
    assert.equal(pending.hasRoom, true);
    mirror('c');
    release[1]!();
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(done, ['a', 'b'], 'a rejected mirror is done too');
    await before;
    assert.equal(landed, true, 'landed waits only for the mirrors running when it was asked');
    assert.equal(settled, false, 'settled waits for the mirror started meanwhile');
    release[2]!();
    await all;
    assert.deepEqual(done, ['a', 'b', 'c']);
    assert.equal(pending.count, 0);
    assert.equal(new PendingMirrors(0).hasRoom, false, 'a limit of 0: every write waits');
  });
});
