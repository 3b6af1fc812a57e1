// The benchmark's closing summary: plain aligned text tables on stdout, readable in a terminal or a
// CI log, apart from the JSON or pretty log lines.
import type { CopyMethod } from './options';
import type { CpuSeconds } from './cpu';
import type { HistoryStats } from './backfill';
import { TIMELINE_SECONDS, type LatencySummary, type TimelineWindow } from './write-load';

export interface MethodOutcome {
  method: CopyMethod;
  /** Why it did not run, when it did not. */
  skipped?: string;
  /** Why it stopped, when it failed. */
  failed?: string;
  rows?: number;
  seconds?: number;
  verified?: boolean;
  /** CPU seconds per million rows copied, per process, over the same span as `seconds`. */
  cpuPerMillionRows?: CpuSeconds | undefined;
  note: string;
}

export interface SourceDescription {
  rows: number;
  avgRowBytes: number;
  heapBytes: number;
  totalBytes: number;
  versions: string;
}

const LABEL: Record<CopyMethod, string> = {
  copy: 'COPY binary',
  chunked: 'COPY in chunks',
  pgcopydb: 'pgcopydb',
  backfill: 'backfill',
};

export function formatCount(value: number): string {
  return Math.round(value).toLocaleString('en-US');
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

function fixed(value: number | undefined, digits: number): string {
  return value === undefined || !Number.isFinite(value) ? '-' : value.toFixed(digits);
}

/**
 * Columns padded to their widest cell: figures right-aligned, the first column and any `textColumns`
 * left-aligned.
 */
export function formatTable(header: string[], rows: string[][], textColumns: number[] = []): string {
  const widths = header.map((cell, i) => Math.max(cell.length, ...rows.map((row) => (row[i] ?? '').length)));
  const isText = (i: number) => i === 0 || textColumns.includes(i);
  const line = (cells: string[]) =>
    cells
      .map((cell, i) => (isText(i) ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}

export function rowsPerSecond(outcome: MethodOutcome): number | undefined {
  if (outcome.rows === undefined || outcome.seconds === undefined || outcome.seconds <= 0) return undefined;
  return outcome.rows / outcome.seconds;
}

function describeSource(source: SourceDescription): string {
  return `source: ${formatCount(source.rows)} rows, avg ${source.avgRowBytes.toFixed(0)} B/row (pg_column_size), heap ${formatBytes(source.heapBytes)}, with indexes ${formatBytes(source.totalBytes)}; ${source.versions}`;
}

function describeHistory(history: HistoryStats | undefined): string {
  if (history === undefined) return 'largest workflow history: -';
  const bytes =
    history.largestHistoryBytes !== undefined ? ` (${formatBytes(history.largestHistoryBytes)})` : '';
  return `largest workflow history: ${formatCount(history.largestHistoryLength)} events${bytes}, over ${history.runs} run(s) of ${history.workflows} workflow(s)`;
}

function ratio(numerator: number | undefined, denominator: number | undefined): string {
  return numerator === undefined || denominator === undefined ? 'n/a' : (numerator / denominator).toFixed(2);
}

export function throughputReport(
  source: SourceDescription,
  outcomes: MethodOutcome[],
  history: HistoryStats | undefined,
): string {
  const table = formatTable(
    ['method', 'rows', 'seconds', 'rows/s', 'verified', 'what the time covers'],
    outcomes.map((outcome) =>
      outcome.skipped !== undefined || outcome.failed !== undefined
        ? [
            LABEL[outcome.method],
            '-',
            '-',
            '-',
            '-',
            outcome.skipped !== undefined ? `skipped: ${outcome.skipped}` : `FAILED: ${outcome.failed}`,
          ]
        : [
            LABEL[outcome.method],
            outcome.rows === undefined ? '-' : formatCount(outcome.rows),
            fixed(outcome.seconds, 1),
            (() => {
              const rate = rowsPerSecond(outcome);
              return rate === undefined ? '-' : formatCount(rate);
            })(),
            outcome.verified === undefined ? '-' : outcome.verified ? 'yes' : 'NO',
            outcome.note,
          ],
    ),
    [5],
  );
  const rate = (method: CopyMethod) => {
    const outcome = outcomes.find((o) => o.method === method);
    return outcome === undefined ? undefined : rowsPerSecond(outcome);
  };
  const backfill = rate('backfill');
  return [
    describeSource(source),
    '',
    table,
    '',
    cpuTable(outcomes),
    '',
    `backfill / COPY: ${ratio(backfill, rate('copy'))}   backfill / pgcopydb: ${ratio(backfill, rate('pgcopydb'))}   (rows/s ratios; 1.00 or more means the backfill is as fast or faster)`,
    `backfill / COPY in chunks: ${ratio(backfill, rate('chunked'))} (what orchestration costs)   COPY in chunks / pgcopydb: ${ratio(rate('chunked'), rate('pgcopydb'))} (what durable chunks with the key in place cost)`,
    describeHistory(history),
  ].join('\n');
}

/** CPU seconds per million rows of each process, per method: orchestration beside copying. */
function cpuTable(outcomes: MethodOutcome[]): string {
  const measured = outcomes.filter((outcome) => outcome.cpuPerMillionRows !== undefined);
  if (measured.length === 0) return 'CPU per process: not measured (needs /proc)';
  return [
    'CPU seconds per million rows (user + system; whole process trees over the copy)',
    formatTable(
      ['method', 'old PostgreSQL', 'new PostgreSQL', 'worker / client', 'Temporal', 'total'],
      measured.map((outcome) => {
        const cpu = outcome.cpuPerMillionRows!;
        const total = cpu.oldPostgres + cpu.newPostgres + cpu.worker + cpu.temporal;
        return [
          LABEL[outcome.method],
          ...[cpu.oldPostgres, cpu.newPostgres, cpu.worker, cpu.temporal, total].map((v) => fixed(v, 2)),
        ];
      }),
    ),
    'worker / client: the in-process worker for the backfill, this process for the COPY pipe, pgcopydb and its children for pgcopydb',
  ].join('\n');
}

export function loadReport(
  source: SourceDescription,
  load: { rate: number; clients: number },
  phases: Record<string, LatencySummary>,
  backfill: MethodOutcome,
  history: HistoryStats | undefined,
  copying: TimelineWindow[] = [],
): string {
  const names: Record<string, string> = {
    idle: 'before backfill',
    starting: 'backfill starting (capture installs, plan)',
    backfill: 'during backfill (copying)',
    after: 'after the copy (capture and reconciliation on)',
  };
  const shown = Object.keys(names).filter((phase) => (phases[phase]?.operations ?? 0) > 0);
  const table = formatTable(
    ['phase', 'writes', 'writes/s', 'p50 ms', 'p99 ms', 'max ms', 'errors'],
    shown.map((phase) => {
      const summary = phases[phase]!;
      return [
        names[phase]!,
        formatCount(summary.operations),
        fixed(summary.perSecond, 1),
        fixed(summary.p50Ms, 2),
        fixed(summary.p99Ms, 2),
        fixed(summary.maxMs, 1),
        String(summary.errors),
      ];
    }),
  );
  const idle = phases.idle;
  const during = phases.backfill;
  const rate = rowsPerSecond(backfill);
  return [
    describeSource(source),
    `write load on old: target ${load.rate} writes/s over ${load.clients} connections; 70% UPDATE, 20% INSERT, 10% DELETE, one row by primary key each`,
    '',
    table,
    '',
    `during / before: p50 x${ratio(during?.p50Ms, idle?.p50Ms)}, p99 x${ratio(during?.p99Ms, idle?.p99Ms)}`,
    `  each write less what the load's own thread waited for a CPU meanwhile: p99 ${fixed(idle?.p99WithoutOwnCpuWaitMs, 2)} ms before, ${fixed(during?.p99WithoutOwnCpuWaitMs, 2)} ms copying, x${ratio(during?.p99WithoutOwnCpuWaitMs, idle?.p99WithoutOwnCpuWaitMs)}`,
    `starting / before: p50 x${ratio(phases.starting?.p50Ms, idle?.p50Ms)}, p99 x${ratio(phases.starting?.p99Ms, idle?.p99Ms)}`,
    `after the copy / before: p50 x${ratio(phases.after?.p50Ms, idle?.p50Ms)}, p99 x${ratio(phases.after?.p99Ms, idle?.p99Ms)} (capture and reconciliation without the copy)`,
    `during backfill, p99 ms of each ${TIMELINE_SECONDS} s: ${copying.length === 0 ? '-' : copying.map((window) => fixed(window.p99Ms, 1)).join(' ')}`,
    `backfill under load: ${backfill.rows === undefined ? '-' : formatCount(backfill.rows)} rows in ${fixed(backfill.seconds, 1)} s, ${rate === undefined ? '-' : formatCount(rate)} rows/s; after the load stopped and reconciliation drained the change log, new ${backfill.verified === true ? 'equals old row for row' : backfill.verified === false ? 'DIFFERS from old' : 'was not checked'}`,
    describeHistory(history),
  ].join('\n');
}
