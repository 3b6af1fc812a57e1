// The router's public surface (`pg-live-migrate/router`): what an application imports. It loads no
// Temporal code and no OpenFeature SDK (that provider is `pg-live-migrate/openfeature`, openfeature.ts).
export { createRouter, MigrationRouter } from './pool';
export { RouterClient } from './client';
export type { RouteContext, RouterQueryConfig } from './calls';
export type { RouterOptions } from './options';
export { RouterError, type RouterErrorCode } from './errors';
export { classifyStatement } from '../db/classify';
export { STAGES, type Stage, type StageState } from '../model/stages';
export type { DiscrepancySink } from './discrepancy-queue';
