// The project's one logger: pino, JSON by default, pretty on a terminal, every string scrubbed of
// passwords before it is written. (worker/temporal-logger.ts adapts it to Temporal's Logger.)
import pino from 'pino';
import { redactSecrets } from '../model/redact';

export type Logger = pino.Logger;

const MAX_DEPTH = 6;

/** Copies a log argument with every string passed through redactSecrets. */
export function redactDeep(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redactSecrets(value);
  if (depth >= MAX_DEPTH || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) {
    const copy: Record<string, unknown> = { type: value.name, message: redactSecrets(value.message) };
    if (value.stack !== undefined) copy.stack = redactSecrets(value.stack);
    const code = (value as { code?: unknown }).code;
    if (code !== undefined) copy.code = code;
    return copy;
  }
  if (Array.isArray(value)) return value.map((item) => redactDeep(item, depth + 1));
  if (Buffer.isBuffer(value) || value instanceof Date) return value;
  return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, redactDeep(item, depth + 1)]));
}

export interface LoggerOptions {
  name: string;
  level?: string;
  /** Pretty output for people; defaults to whether stdout is a terminal. LOG_FORMAT=json forces JSON. */
  pretty?: boolean;
  destination?: pino.DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  const pretty =
    options.pretty ??
    (process.stdout.isTTY === true && process.env.LOG_FORMAT !== 'json' && !options.destination);
  const pinoOptions: pino.LoggerOptions = {
    name: options.name,
    level: options.level ?? process.env.LOG_LEVEL ?? 'info',
    redact: { paths: ['password', '*.password', 'connectionString', '*.connectionString'], censor: '***' },
    hooks: {
      logMethod(args, method) {
        method.apply(this, args.map((arg) => redactDeep(arg)) as Parameters<typeof method>);
      },
    },
  };
  if (pretty) {
    return pino({ ...pinoOptions, transport: { target: 'pino-pretty', options: { colorize: true } } });
  }
  // Synchronous writes keep log lines in order with plain stdout writes and complete before exit.
  return pino(pinoOptions, options.destination ?? pino.destination({ dest: 1, sync: true }));
}
