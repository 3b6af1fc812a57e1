// The benchmarks' figures as JSON (scripts/benchmark/results.ts): one file a run, named for the
// benchmark, holding the host and the figures as given.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { writeBenchResults, type BenchResults } from '../../scripts/benchmark/results';

describe('benchmark results', () => {
  it('writes one JSON file a run with the benchmark, the time, the host and the figures', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bench-results-'));
    try {
      const first = writeBenchResults('router', { ratioP50: 1.04, rows: [1, 2] }, dir);
      const second = writeBenchResults('router', { ratioP50: 1.1 }, dir);
      assert.notEqual(first, second);
      assert.deepEqual(readdirSync(dir).sort(), [path.basename(first), path.basename(second)].sort());
      assert.match(path.basename(first), /^router-\d{4}-\d\d-\d\dT[\d-]+Z(-\d+)?\.json$/);
      const saved = JSON.parse(readFileSync(first, 'utf8')) as BenchResults<unknown>;
      assert.equal(saved.benchmark, 'router');
      assert.deepEqual(saved.figures, { ratioP50: 1.04, rows: [1, 2] });
      assert.ok(saved.host.cpus >= 1);
      assert.ok(!Number.isNaN(Date.parse(saved.at)));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
