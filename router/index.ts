// The router's public surface: what an application imports.
export { createRouter, MigrationRouter, RouterClient } from './router';
export type { RouteContext, RouterOptions, RouterQueryConfig } from './router';
export { classifyStatement } from './classify';
export { StageFlagProvider } from './openfeature-provider';
export { STAGES, type Stage, type StageState } from './stage-store';
export type { DiscrepancySink } from './discrepancy-queue';
