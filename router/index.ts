// The router's public surface: what an application imports.
export { createRouter, MigrationRouter, RouterClient } from './router';
export type { RouteContext, RouterOptions, RouterQueryConfig } from './router';
export { classifyStatement } from '../db/classify';
export { StageFlagProvider } from './openfeature-provider';
export { STAGES, type Stage, type StageState } from '../model/stages';
export type { DiscrepancySink } from './discrepancy-queue';
