// The worker's metrics endpoint: one HTTP port, `/metrics`, serving the worker's own metrics
// (worker/metrics.ts) followed by the Temporal SDK's. The SDK's Prometheus exporter can only serve on
// an address of its own, so it listens on a free loopback port and each scrape reads it there: one
// scrape target per worker, and the SDK's port never leaves the machine. A taken port is refused in
// one line before the worker connects anywhere.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { freePort, PortTakenError } from '../provision/ports';
import { METRICS_PORT_ENV, METRICS_PORT_FLAG } from '../config/metrics';

/** How long a scrape waits for the SDK's exporter before it answers without its metrics. */
const SDK_SCRAPE_TIMEOUT_MS = 2000;

export interface MetricsServer {
  port: number;
  /** Where the SDK's exporter is to listen (for installRuntime). */
  sdkAddress: string;
  close(): Promise<void>;
}

export async function startMetricsServer(port: number, registry: Registry): Promise<MetricsServer> {
  const sdkAddress = `127.0.0.1:${await freePort()}`;
  const server = http.createServer((request, response) => {
    if (request.method !== 'GET' || (request.url ?? '/').split('?')[0] !== '/metrics') {
      response
        .writeHead(404, { 'content-type': 'text/plain' })
        .end('pg-live-migrate worker: metrics are on /metrics\n');
      return;
    }
    void scrape(registry, sdkAddress).then(
      (text) => response.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) =>
        response
          .writeHead(500, { 'content-type': 'text/plain' })
          .end(`metrics failed: ${err instanceof Error ? err.message : String(err)}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(
        err.code === 'EADDRINUSE'
          ? new PortTakenError(
              port,
              'metrics',
              `${METRICS_PORT_ENV} (or ${METRICS_PORT_FLAG})`,
              'another worker',
            )
          : err,
      ),
    );
    server.listen(port, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    sdkAddress,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections(); // a scraper's keep-alive connection would hold the close
      }),
  };
}

async function scrape(registry: Registry, sdkAddress: string): Promise<string> {
  const own = await registry.metrics();
  let sdk: string;
  try {
    const response = await fetch(`http://${sdkAddress}/metrics`, {
      signal: AbortSignal.timeout(SDK_SCRAPE_TIMEOUT_MS),
    });
    sdk = response.ok
      ? await response.text()
      : `# Temporal SDK metrics unavailable: HTTP ${response.status}\n`;
  } catch (err) {
    sdk = `# Temporal SDK metrics unavailable: ${err instanceof Error ? err.message : String(err)}\n`;
  }
  return `${own.endsWith('\n') ? own : `${own}\n`}${sdk.endsWith('\n') ? sdk : `${sdk}\n`}`;
}
