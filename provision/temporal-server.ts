// Starts the Temporal CLI's dev server through @temporalio/testing, with the project's search
// attributes registered. Used by the dev stack (fixed ports, SQLite file, Web UI) and the tests.
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { SEARCH_ATTRIBUTES } from '../workflows/search-attributes';

export interface TemporalDevServerOptions {
  cliPath: string;
  port?: number;
  /** Serve the Web UI on this port; no UI when unset. */
  uiPort?: number;
  /** Persist to this SQLite file; in memory when unset. */
  dbFilename?: string;
  namespace?: string;
  /** Server dynamic config, e.g. { 'limit.historyCount.suggestContinueAsNew': 200 } in tests. */
  dynamicConfig?: Record<string, string | number | boolean>;
}

export interface TemporalDevServer {
  address: string;
  namespace: string;
  uiUrl?: string;
  environment: TestWorkflowEnvironment;
  stop(): Promise<void>;
}

export async function startTemporalDevServer(options: TemporalDevServerOptions): Promise<TemporalDevServer> {
  const namespace = options.namespace ?? 'default';
  const environment = await TestWorkflowEnvironment.createLocal({
    server: {
      executable: { type: 'existing-path', path: options.cliPath },
      ip: '127.0.0.1',
      namespace,
      searchAttributes: SEARCH_ATTRIBUTES,
      log: { format: 'json', level: 'warn' },
      extraArgs: [
        '--ui-disable-news-fetch',
        ...Object.entries(options.dynamicConfig ?? {}).flatMap(([key, value]) => [
          '--dynamic-config-value',
          `${key}=${JSON.stringify(value)}`,
        ]),
      ],
      ...(options.port !== undefined && { port: options.port }),
      ...(options.uiPort !== undefined && { ui: true, uiPort: options.uiPort }),
      ...(options.dbFilename !== undefined && { dbFilename: options.dbFilename }),
    },
  });
  let stopped = false;
  return {
    address: environment.address,
    namespace,
    ...(options.uiPort !== undefined && { uiUrl: `http://127.0.0.1:${options.uiPort}` }),
    environment,
    async stop() {
      if (stopped) return;
      stopped = true;
      await environment.teardown();
    },
  };
}
