// The worker's workflow bundle: the workflows plus the log interceptor, bundled once per worker.
// Webpack's report (some twenty lines) goes to debug; the one line with the bundle's size stays at info.
import type { LogLevel, LogMetadata, Logger } from '@temporalio/common';
import { bundleWorkflowCode, Runtime, type WorkflowBundle } from '@temporalio/worker';

/** Passes `logger` everything but webpack's multi-line report at info, which it writes at debug. */
export function quietBundlerLogger(logger: Logger): Logger {
  const log = (level: LogLevel, message: string, meta?: LogMetadata): void => {
    logger.log(level === 'INFO' && message.includes('\n') ? 'DEBUG' : level, message, meta);
  };
  return {
    log,
    trace: (message, meta) => {
      log('TRACE', message, meta);
    },
    debug: (message, meta) => {
      log('DEBUG', message, meta);
    },
    info: (message, meta) => {
      log('INFO', message, meta);
    },
    warn: (message, meta) => {
      log('WARN', message, meta);
    },
    error: (message, meta) => {
      log('ERROR', message, meta);
    },
  };
}

export function bundleWorkflows(): Promise<WorkflowBundle> {
  return bundleWorkflowCode({
    workflowsPath: require.resolve('../workflows'),
    workflowInterceptorModules: [require.resolve('../workflows/log-attributes')],
    logger: quietBundlerLogger(Runtime.instance().logger),
  });
}
