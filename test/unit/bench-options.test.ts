// The benchmark's settings (scripts/benchmark/options.ts) and the CPU list it pins with
// (scripts/benchmark/cpu-placement.ts).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { readBenchOptions } from '../../scripts/benchmark/options';
import { cpusOfAffinity } from '../../scripts/benchmark/cpu-placement';
import { OperatorError } from '../../model/errors';

describe('benchmark options', () => {
  it('keeps every process on every CPU unless BENCH_OLD_APART is on, in load mode', () => {
    assert.equal(readBenchOptions({ BENCH_MODE: 'load' }).load.oldApart, false);
    assert.equal(readBenchOptions({ BENCH_MODE: 'load', BENCH_OLD_APART: 'on' }).load.oldApart, true);
  });

  it('refuses BENCH_OLD_APART outside load mode, and a value other than on or off', () => {
    assert.throws(
      () => readBenchOptions({ BENCH_OLD_APART: 'on' }),
      (err: unknown) => err instanceof OperatorError && /load only/.test(err.message),
    );
    assert.throws(
      () => readBenchOptions({ BENCH_MODE: 'load', BENCH_OLD_APART: 'yes' }),
      (err: unknown) =>
        err instanceof OperatorError && /BENCH_OLD_APART is yes; it must be one of on, off/.test(err.message),
    );
  });
});

describe('CPU affinity list', () => {
  it("reads taskset's answer: single CPUs and ranges, lowest first", () => {
    assert.deepEqual(cpusOfAffinity("pid 123's current affinity list: 0-3,6\n"), [0, 1, 2, 3, 6]);
    assert.deepEqual(cpusOfAffinity("pid 7's current affinity list: 5,1"), [1, 5]);
    assert.equal(cpusOfAffinity('taskset: failed to get pid 7 affinity'), undefined);
  });
});
