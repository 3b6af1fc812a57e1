// The gates a step's figures must pass before the migration goes on: pure, from the figures the
// routers reported for the soak window, the reconciliation's state and what the migration knows
// (the latest verification, the query benchmark). Which checks apply depends on the stage: only
// `shadow` compares reads, new's error rate counts once new answers reads, read latency in `live`.
import type { GateFigures } from '../../model/gate-stats';
import type { GateCheck, ReconciliationStatus } from '../../model/messages';
import type { GateLimits, StagePosition } from '../../model/migration-plan';
import type { QueryBenchmarkResult } from '../../model/query-benchmark';

export interface GateInputs {
  step: StagePosition;
  limits: GateLimits;
  /** The routers' figures over the soak window. */
  figures: GateFigures;
  /** null: reconciliation is not running. */
  reconciliation: ReconciliationStatus | null;
  verifiedClean: boolean | null;
  queryBenchmark: QueryBenchmarkResult | null;
}

export function gateChecks({
  step,
  limits,
  figures,
  reconciliation,
  verifiedClean,
  queryBenchmark,
}: GateInputs): GateCheck[] {
  const checks: GateCheck[] = [];
  const check = (name: string, value: number | null, limit: number | null, ok: boolean, detail: string) =>
    checks.push({ name, value, limit, ok, detail });
  /** A figure that must not exceed its limit; nothing measured passes. */
  const atMost = (name: string, value: number | null, limit: number, detail: string) =>
    check(name, value, limit, value === null || value <= limit, detail);

  // Only `shadow` compares reads; in `live` new answers its share itself, measured below.
  if (step.stage === 'shadow') {
    const compared = figures.totals.shadowCompared;
    if (compared < limits.minShadowComparisons) {
      check(
        'shadow comparisons',
        compared,
        limits.minShadowComparisons,
        false,
        `only ${compared} shadow reads were compared; the gate needs ${limits.minShadowComparisons}`,
      );
    } else {
      atMost(
        'shadow mismatch rate',
        figures.shadowMismatchRate,
        limits.maxShadowMismatchRate,
        `${figures.totals.shadowMismatched} of ${compared} shadow reads differed`,
      );
    }
  }
  if (step.stage === 'live' || step.stage === 'switched') {
    atMost(
      'error rate on new',
      figures.newErrorRate,
      limits.maxNewErrorRate,
      `${figures.totals.readsNewFailed} of ${figures.totals.readsNew} reads on new failed`,
    );
  }
  if (step.stage === 'live') {
    const ratio = figures.readLatencyRatio;
    atMost(
      'read latency new/old',
      ratio,
      limits.maxLatencyRatio,
      ratio === null
        ? 'not measured: reads ran on one side only'
        : `mean read time on new is ${ratio.toFixed(2)}× old's`,
    );
  }
  const backlog = reconciliation?.backlog ?? null;
  check(
    'reconciliation backlog',
    backlog,
    limits.maxReconciliationBacklog,
    backlog !== null && backlog <= limits.maxReconciliationBacklog,
    reconciliation === null
      ? 'reconciliation is not running'
      : `${reconciliation.changeLogBacklog} changes and ${reconciliation.queuedDiscrepancyKeys} discrepancy keys waiting, lag ${reconciliation.lagSeconds.toFixed(1)} s`,
  );
  const failing = reconciliation?.failing ?? [];
  check(
    'reconciliation failures',
    failing.length,
    0,
    failing.length === 0,
    failing.length === 0
      ? 'every table syncs'
      : failing
          .map((failure) => `${failure.table}: ${failure.message} (${failure.attempts} tries)`)
          .join('; '),
  );
  check(
    'last verification clean',
    verifiedClean === null ? null : verifiedClean ? 0 : 1,
    0,
    verifiedClean === true,
    verifiedClean === true
      ? 'the latest verification found nothing left to repair'
      : 'no clean verification since dual_write',
  );
  if (limits.maxQueryRatio !== null && queryBenchmark !== null) {
    const worst = queryBenchmark.queries.reduce<{ name: string; ratio: number } | null>(
      (found, query) =>
        found === null || query.ratioP50 > found.ratio ? { name: query.name, ratio: query.ratioP50 } : found,
      null,
    );
    atMost(
      'query p50 ratio new/old',
      worst?.ratio ?? null,
      limits.maxQueryRatio,
      worst === null
        ? 'no query was benchmarked'
        : `slowest on new: ${worst.name} at ${worst.ratio.toFixed(2)}×`,
    );
  }
  return checks;
}

/** The failed checks as a hold states them: "name: detail; name: detail". */
export function failedChecks(checks: GateCheck[]): string {
  return checks
    .filter((c) => !c.ok)
    .map((c) => `${c.name}: ${c.detail}`)
    .join('; ');
}
