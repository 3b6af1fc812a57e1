// Installs the Temporal Runtime once per process, logging through pino. The worker process lets the
// Runtime turn SIGINT/SIGTERM into a graceful shutdown; processes that manage servers handle
// signals themselves (they must stop the worker before the servers) and pass no signals.
import { Runtime, makeTelemetryFilterString } from '@temporalio/worker';
import { PinoTemporalLogger } from './temporal-logger';
import type { Logger } from '../db/logger';

export const WORKER_SHUTDOWN_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGQUIT', 'SIGUSR2'];

export function installRuntime(logger: Logger, shutdownSignals: NodeJS.Signals[]): void {
  Runtime.install({
    logger: new PinoTemporalLogger(logger),
    shutdownSignals,
    telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'WARN' }), forward: {} } },
  });
}
