// The router's statement timings, with no server: every statement `time` runs is in the latency
// histogram by side and kind once it is scraped (durations go in batches, off each statement's
// path), its failures are counted, reads feed the gates' counters and what the application waited
// for feeds the brake's latency window.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PENDING_DURATIONS, RouterMetrics } from '../../router/metrics';

const NAME = 'live_migrate_router_query_seconds';

/** The value of one sample line of the histogram, by its suffix and labels. */
function sample(text: string, suffix: string, labels: RegExp): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${NAME}_${suffix}{`) && labels.test(l));
  return line === undefined ? undefined : Number(line.split(' ').pop());
}

describe('router statement timings', () => {
  it('scrapes every statement timed, also when more than a batch is pending, with failures counted', async () => {
    const metrics = new RouterMetrics({ migration: 'm', router: 'r' });
    const reads = 3 * PENDING_DURATIONS + 10; // full batches of pending durations, and a part batch
    for (let i = 0; i < reads; i++) await metrics.time('old', 'read', () => Promise.resolve(i));
    const failing = 3;
    for (let i = 0; i < failing; i++) {
      await assert.rejects(metrics.time('new', 'write', () => Promise.reject(new Error('refused'))));
    }
    await metrics.time('new', 'shadow', () => Promise.resolve());

    const text = await metrics.registry.metrics();
    const oldRead = /side="old",kind="read"/;
    assert.equal(sample(text, 'count', oldRead), reads);
    assert.equal(sample(text, 'bucket', /(?=.*le="\+Inf")(?=.*side="old",kind="read")/), reads);
    assert.equal(sample(text, 'count', /side="new",kind="write"/), failing);
    assert.equal(sample(text, 'count', /side="new",kind="shadow"/), 1);
    assert.match(text, /live_migrate_router_errors_total\{[^}]*side="new",kind="write"[^}]*\} 3/);

    // Scraped again with nothing new: the same counts, nothing observed twice.
    assert.equal(sample(await metrics.registry.metrics(), 'count', oldRead), reads);

    const published = metrics.publishStats();
    assert.equal(published.readsOld, reads);
    const waited = (published.latency ?? []).reduce((sum, n) => sum + n, 0);
    assert.equal(waited, reads + failing, 'reads and writes in the latency window, not the shadow read');
  });

  it('puts a full batch into the histogram off the path, before any scrape', async () => {
    const metrics = new RouterMetrics({ migration: 'm', router: 'r' });
    const observed: number[] = [];
    // The histogram's own observe, watched: a full batch goes in on the next turn of the event loop.
    const histogram = metrics.registry.getSingleMetric(NAME) as unknown as {
      labels(...values: string[]): { observe(value: number): void };
    };
    const labels = histogram.labels.bind(histogram);
    histogram.labels = (...values: string[]) => {
      const child = labels(...values);
      return { observe: (value: number) => (observed.push(value), child.observe(value)) };
    };
    for (let i = 1; i < PENDING_DURATIONS; i++) await metrics.time('old', 'write', () => Promise.resolve());
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(observed.length, 0, 'a batch that is not full waits');
    await metrics.time('old', 'write', () => Promise.resolve());
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(observed.length, PENDING_DURATIONS, 'a full batch went in');
    assert.ok(observed.every((seconds) => seconds >= 0 && seconds < 1));
  });
});
