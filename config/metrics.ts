// Where the worker serves its Prometheus metrics: `--metrics-port`, else MIGRATE_METRICS_PORT, else
// the config file's worker.metricsPort; off (null) when none is set, so several workers on one
// machine (the dev stack, the tests) never race for a port. `off` switches it off explicitly.
import { OperatorError } from '../model/errors';
import type { SiteConfig } from './schema';

export const METRICS_PORT_ENV = 'MIGRATE_METRICS_PORT';
export const METRICS_PORT_FLAG = '--metrics-port';
/** The port docker-compose.yml and the README use (the OpenTelemetry Prometheus exporter's). */
export const SUGGESTED_METRICS_PORT = 9464;

export function resolveMetricsPort(
  site: SiteConfig,
  env: NodeJS.ProcessEnv,
  flag: string | undefined,
): number | null {
  if (flag !== undefined) return parsePort(flag, METRICS_PORT_FLAG);
  const fromEnv = env[METRICS_PORT_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return parsePort(fromEnv, METRICS_PORT_ENV);
  return site.worker.metricsPort ?? null;
}

function parsePort(value: string, setting: string): number | null {
  const text = value.trim();
  if (text === 'off') return null;
  const port = Number(text);
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) {
    throw new OperatorError(
      `${setting} must be a port number from 1 to 65535, or off, not ${JSON.stringify(value)} (e.g. ${SUGGESTED_METRICS_PORT})`,
    );
  }
  return port;
}
