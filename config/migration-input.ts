// From a migration config to the migration workflow's input: names and numbers only, never a
// connection string (the worker resolves "old" and "new" from its own environment).
import type { MigrationInput } from '../workflows/migration';
import { backfillInputFor } from './backfill-input';
import type { MigrationConfig } from './schema';

export function migrationInputFor(config: MigrationConfig): MigrationInput {
  const { cutover, verification, queryBenchmark } = config;
  return {
    name: config.name,
    tables: config.tables.map((table) => backfillInputFor(config, table)),
    settings: {
      readSteps: cutover.readSteps,
      stepSoakMs: cutover.stepSoak,
      completionSoakMs: cutover.soak,
      onGateFailure: cutover.onGateFailure,
      approvals: cutover.approvals,
      gates: cutover.gates,
      fenceTimeoutMs: cutover.fenceTimeout,
      verification: {
        chunkSize: verification.chunkSize,
        partitions: verification.partitions,
        settleMs: verification.settle,
        inFlightWaitMs: verification.inFlightWait,
      },
      queryBenchmark: {
        queries: queryBenchmark.queries,
        topStatements: queryBenchmark.topStatements,
        runs: queryBenchmark.runs,
      },
    },
  };
}
