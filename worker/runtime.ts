// Installs the Temporal Runtime once per process, logging through pino. Every process handles its
// signals itself (the worker must obey them while it starts too, and processes that manage servers
// stop the worker before the servers), so none is given to the Runtime. With `sdkMetricsAddress`,
// the SDK's Prometheus exporter serves its metrics there (the worker's metrics endpoint,
// worker/metrics-server.ts, serves them with its own): durations in seconds, named with their unit.
import { Runtime, makeTelemetryFilterString } from '@temporalio/worker';
import { PinoTemporalLogger } from './temporal-logger';
import type { Logger } from '../db/logger';

export function installRuntime(
  logger: Logger,
  shutdownSignals: NodeJS.Signals[],
  options: { sdkMetricsAddress?: string } = {},
): void {
  Runtime.install({
    logger: new PinoTemporalLogger(logger),
    shutdownSignals,
    telemetryOptions: {
      logging: { filter: makeTelemetryFilterString({ core: 'WARN' }), forward: {} },
      ...(options.sdkMetricsAddress !== undefined && {
        metrics: {
          prometheus: {
            bindAddress: options.sdkMetricsAddress,
            useSecondsForDurations: true,
            unitSuffix: true,
          },
        },
      }),
    },
  });
}
