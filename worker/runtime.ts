// Installs the Temporal Runtime once per process, logging through pino. Every process handles its
// signals itself (the worker must obey them while it starts too, and processes that manage servers
// stop the worker before the servers), so none is given to the Runtime.
import { Runtime, makeTelemetryFilterString } from '@temporalio/worker';
import { PinoTemporalLogger } from './temporal-logger';
import type { Logger } from '../db/logger';

export function installRuntime(logger: Logger, shutdownSignals: NodeJS.Signals[]): void {
  Runtime.install({
    logger: new PinoTemporalLogger(logger),
    shutdownSignals,
    telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'WARN' }), forward: {} } },
  });
}
