// Every benchmark's figures as JSON under .data/bench-results/, beside the text it prints: one file
// a run, named for the benchmark and the time it ended, so runs can be compared and plotted.
import { cpus } from 'node:os';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { dataDir } from '../../provision/project-paths';

export const BENCH_RESULTS_DIR = path.join(dataDir, 'bench-results');

export interface BenchResults<T> {
  benchmark: string;
  /** When the run ended, ISO 8601. */
  at: string;
  host: { cpus: number; cpuModel: string; platform: string; node: string };
  figures: T;
}

/** Writes `figures` of `benchmark` to `<dir>/<benchmark>-<time>.json`; returns the file's path. */
export function writeBenchResults<T>(benchmark: string, figures: T, dir = BENCH_RESULTS_DIR): string {
  const at = new Date();
  const results: BenchResults<T> = {
    benchmark,
    at: at.toISOString(),
    host: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      platform: process.platform,
      node: process.version,
    },
    figures,
  };
  mkdirSync(dir, { recursive: true });
  const stem = path.join(dir, `${benchmark}-${at.toISOString().replace(/[:.]/g, '-')}`);
  // Two runs that end in the same millisecond each keep their own file.
  let file = `${stem}.json`;
  for (let n = 2; existsSync(file); n++) file = `${stem}-${n}.json`;
  writeFileSync(file, `${JSON.stringify(results, null, 2)}\n`, { flag: 'wx' });
  return file;
}
