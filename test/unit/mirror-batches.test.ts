// Mirrors no write waits for, batched per table, with no server (the sync is a fake that records
// its calls and is released by the test): while one runs, the mirrors of the same table that come
// go together in the next one, up to MIRROR_BATCH_KEYS keys, and each write's mirror settles only
// once the batch with its keys committed; beyond that size a mirror runs on its own; another table
// is not held up; a mirror the write waits for never waits for a batch. With a delay, a mirror that
// finds none of its table running waits for more to go with it, unless its batch is full or the
// write switch's fence hurries it. Hazards 3 and 4 with real
// servers and racing writers: deferred-mirror.test.ts, router-hazards.test.ts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLogger } from '../../db/logger';
import type { SyncKeysInput, SyncKeysResult } from '../../db/sync';
import type { TableRef } from '../../model/tables';
import { CircuitBreaker } from '../../router/circuit-breaker';
import type { DiscrepancyQueue } from '../../router/discrepancy-queue';
import { MIRROR_BATCH_KEYS, Mirror, type WrittenKeys } from '../../router/mirror';
import { RouterMetrics } from '../../router/metrics';
import { watch } from '../harness/wait';

const ORDERS: TableRef = { schema: 'public', table: 'orders' };
const USERS: TableRef = { schema: 'public', table: 'users' };

/** A sync that runs only when the test lets it: each call waits for its own release. */
function heldSync() {
  const calls: Array<{ input: SyncKeysInput; release: () => void }> = [];
  const mirrorKeys = (input: SyncKeysInput): Promise<SyncKeysResult> =>
    new Promise((resolve) =>
      calls.push({
        input,
        release: () => resolve({ keys: input.keys.length, upserted: input.keys.length, deleted: 0 }),
      }),
    );
  return { calls, mirrorKeys };
}

function mirrorWith(mirrorKeys: (input: SyncKeysInput) => Promise<SyncKeysResult>, delayMs = 0) {
  const applied: string[] = [];
  const queued: string[][] = [];
  const metrics = new RouterMetrics({ migration: 'm', router: 'r' });
  const mirror = new Mirror({
    migration: 'm',
    mirrorKeys,
    applied: (_from, entries) => applied.push(...entries),
    breaker: new CircuitBreaker(),
    queue: {
      add: (_table: TableRef, keys: string[][]) => queued.push(...keys),
    } as unknown as DiscrepancyQueue,
    metrics,
    logger: createLogger({ name: 'test', level: 'silent' }),
    timeoutMs: 60_000,
    delayMs: () => delayMs,
  });
  return { mirror, applied, queued, metrics };
}

function written(table: TableRef, ...ids: number[]): WrittenKeys {
  return {
    tables: [{ table, keys: ids.map((id) => [String(id)]), entries: ids.map((id) => `e${id}`) }],
    overflow: false,
  };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('mirrors no write waits for, in batches', () => {
  it('those that come while one runs go together in the next, and each settles with its batch', async () => {
    const sync = heldSync();
    const { mirror, applied, queued, metrics } = mirrorWith(sync.mirrorKeys);
    const first = watch(mirror.mirror('old', 'new', written(ORDERS, 1), false));
    await turn();
    assert.equal(sync.calls.length, 1, 'the first runs at once');
    const later = [2, 3, 4].map((id) => watch(mirror.mirror('old', 'new', written(ORDERS, id), false)));
    const otherTable = watch(mirror.mirror('old', 'new', written(USERS, 9), false));
    await turn();
    assert.equal(sync.calls.length, 2, 'the later ones wait for the running one; another table does not');
    assert.deepEqual(sync.calls[1]!.input.table, USERS);

    sync.calls[0]!.release();
    await first.promise;
    await turn();
    assert.equal(sync.calls.length, 3, 'the next batch started when the first ended');
    assert.deepEqual(sync.calls[2]!.input.keys, [['2'], ['3'], ['4']], 'one mirror for the three writes');
    assert.ok(
      later.every((w) => !w.settled()),
      'their writes wait for the batch to commit',
    );

    sync.calls[2]!.release();
    await Promise.all(later.map((w) => w.promise));
    sync.calls[1]!.release();
    await otherTable.promise;
    assert.deepEqual(
      applied.sort(),
      ['e1', 'e2', 'e3', 'e4', 'e9'],
      'every entry of a mirrored key is done with',
    );
    assert.deepEqual(queued, []);
    assert.equal(await metrics.count('mirrors', 'mirrored'), 5, 'counted per write');

    // Nothing running any more: the next mirror runs at once again.
    const again = watch(mirror.mirror('old', 'new', written(ORDERS, 5), false));
    await turn();
    assert.equal(sync.calls.length, 4);
    sync.calls[3]!.release();
    await again.promise;
  });

  it('keys beyond a full batch go on their own; a mirror the write waits for never waits for a batch', async () => {
    const sync = heldSync();
    const { mirror } = mirrorWith(sync.mirrorKeys);
    const running = mirror.mirror('old', 'new', written(ORDERS, 0), false);
    const many = Array.from({ length: MIRROR_BATCH_KEYS }, (_, i) => i + 1);
    const full = mirror.mirror('old', 'new', written(ORDERS, ...many), false);
    const beyond = mirror.mirror('old', 'new', written(ORDERS, 1000), false);
    const waited = mirror.mirror('old', 'new', written(ORDERS, 2000), true);
    await turn();
    const keysOf = (i: number) => sync.calls[i]!.input.keys.map(([id]) => id);
    assert.equal(sync.calls.length, 3, 'the running one, the one beyond the full batch, the waited one');
    assert.deepEqual(keysOf(1), ['1000']);
    assert.deepEqual(keysOf(2), ['2000']);
    for (const call of sync.calls) call.release();
    await Promise.all([running, beyond, waited]);
    await turn();
    assert.equal(sync.calls.length, 4, 'then the full batch');
    assert.equal(sync.calls[3]!.input.keys.length, MIRROR_BATCH_KEYS);
    sync.calls[3]!.release();
    await full;
  });

  it('with a delay, the first waits for more of its table to go with it; a full batch or the fence starts it at once', async () => {
    const sync = heldSync();
    // A delay no test waits out: only a full batch and hurry() start a mirror here.
    const { mirror, applied } = mirrorWith(sync.mirrorKeys, 600_000);
    const together = [1, 2, 3].map((id) => watch(mirror.mirror('old', 'new', written(ORDERS, id), false)));
    await turn();
    assert.equal(sync.calls.length, 0, 'nothing runs during the delay');
    const many = Array.from({ length: MIRROR_BATCH_KEYS - 3 }, (_, i) => 100 + i);
    const filling = watch(mirror.mirror('old', 'new', written(ORDERS, ...many), false));
    await turn();
    assert.equal(sync.calls.length, 1, 'a full batch starts at once');
    assert.equal(sync.calls[0]!.input.keys.length, MIRROR_BATCH_KEYS);
    assert.deepEqual(
      sync.calls[0]!.input.keys.slice(0, 3),
      [['1'], ['2'], ['3']],
      'with the writes that waited',
    );
    // While it runs the next batch waits for it, not for the delay.
    const next = watch(mirror.mirror('old', 'new', written(ORDERS, 7), false));
    sync.calls[0]!.release();
    await Promise.all([...together, filling].map((w) => w.promise));
    await turn();
    assert.equal(sync.calls.length, 2, 'the next batch starts when the running one ends');
    sync.calls[1]!.release();
    await next.promise;

    // Nothing runs: the next mirror waits out the delay again, unless the fence is up.
    const delayed = watch(mirror.mirror('old', 'new', written(ORDERS, 8), false));
    const users = watch(mirror.mirror('old', 'new', written(USERS, 9), false));
    await turn();
    assert.equal(sync.calls.length, 2);
    mirror.hurry();
    await turn();
    assert.equal(sync.calls.length, 4, 'hurry() starts every table’s waiting batch');
    sync.calls[2]!.release();
    sync.calls[3]!.release();
    await Promise.all([delayed.promise, users.promise]);
    assert.equal(applied.length, 3 + many.length + 3);
    // A write of a full batch's keys or more does not wait at all.
    const big = watch(mirror.mirror('old', 'new', written(ORDERS, ...many, 1, 2, 3), false));
    await turn();
    assert.equal(sync.calls.length, 5);
    sync.calls[4]!.release();
    await big.promise;
  });

  it('a failed batch queues every key of its writes for reconciliation, and the next batch still runs', async () => {
    let calls = 0;
    const released: Array<() => void> = [];
    const { mirror, queued, metrics, applied } = mirrorWith(
      (input) =>
        new Promise((resolve, reject) => {
          calls++;
          const fail = calls === 2;
          released.push(() =>
            fail
              ? reject(new Error('new refused'))
              : resolve({ keys: input.keys.length, upserted: input.keys.length, deleted: 0 }),
          );
        }),
    );
    const first = mirror.mirror('old', 'new', written(ORDERS, 1), false);
    const second = mirror.mirror('old', 'new', written(ORDERS, 2), false);
    const third = mirror.mirror('old', 'new', written(ORDERS, 3), false);
    await turn();
    released[0]!();
    await first;
    await turn();
    const fourth = mirror.mirror('old', 'new', written(ORDERS, 4), false);
    released[1]!();
    await Promise.all([second, third]);
    await turn();
    released[2]!();
    await fourth;
    assert.deepEqual(queued, [['2'], ['3']]);
    assert.equal(await metrics.count('mirrors', 'failed'), 2, 'both writes of the failed batch');
    assert.deepEqual(applied.sort(), ['e1', 'e4'], 'a failed batch leaves its change log entries');
  });
});
