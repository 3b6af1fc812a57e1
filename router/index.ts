// The router's public surface: what an application imports.
export { createRouter, MigrationRouter } from './pool';
export { RouterClient } from './client';
export type { RouteContext, RouterQueryConfig } from './calls';
export type { RouterOptions } from './options';
export { RouterError, type RouterErrorCode } from './errors';
export { classifyStatement } from '../db/classify';
export { StageFlagProvider } from './openfeature-provider';
export { STAGES, type Stage, type StageState } from '../model/stages';
export type { DiscrepancySink } from './discrepancy-queue';
