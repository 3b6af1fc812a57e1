// The migration config file's shape, validated with zod: what an operator may write, with defaults.
// Secrets never live here: a connection names an environment variable that holds them.
import { msToNumber } from '@temporalio/common';
import { z } from 'zod';
import {
  APPROVAL_POINTS,
  DEFAULT_APPROVALS,
  DEFAULT_COMPLETION_SOAK_MS,
  DEFAULT_GATES,
  DEFAULT_READ_STEPS,
  DEFAULT_STEP_SOAK_MS,
  readStepProblems,
} from '../model/migration-plan';
import {
  DEFAULT_CHUNKS_IN_FLIGHT,
  DEFAULT_CHUNKS_PER_ACTIVITY,
  DEFAULT_PARTITIONS,
  DEFAULT_THROTTLE,
} from '../model/throttle-settings';
import { hasQueryPassword } from '../model/redact';
import { DEFAULT_LATENCY_TARGET } from '../model/latency-throttle';
import { MAX_NICE_RATIO } from '../model/messages';

const ENV_VAR_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const IDENTIFIER = '[A-Za-z_][A-Za-z0-9_$]*';
const TABLE_NAME = new RegExp(`^(${IDENTIFIER}\\.)?${IDENTIFIER}$`);
const MIGRATION_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/;

const envVarName = z
  .string()
  .regex(ENV_VAR_NAME, 'must be an environment variable name such as OLD_DATABASE_URL');

/** Where a database is: a URL held in an environment variable, or a URL without password plus a password variable. */
export const connectionSpecSchema = z
  .strictObject({
    urlEnv: envVarName.optional(),
    url: z.string().optional(),
    passwordEnv: envVarName.optional(),
  })
  .superRefine((spec, ctx) => {
    if ((spec.url === undefined) === (spec.urlEnv === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'set exactly one of urlEnv (recommended) or url' });
      return;
    }
    if (spec.url !== undefined) {
      let parsed: URL;
      try {
        parsed = new URL(spec.url);
      } catch {
        ctx.addIssue({
          code: 'custom',
          path: ['url'],
          message: 'is not a URL such as postgres://user@host:5432/db',
        });
        return;
      }
      if (parsed.password !== '' || hasQueryPassword(parsed)) {
        ctx.addIssue({
          code: 'custom',
          path: ['url'],
          message:
            'contains a password; config files are meant to be committed, so move the URL into an environment variable and name it with urlEnv, or remove the password and set passwordEnv',
        });
      }
      if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
        ctx.addIssue({
          code: 'custom',
          path: ['url'],
          message: 'must start with postgres:// or postgresql://',
        });
      }
    }
  });
export type ConnectionSpec = z.infer<typeof connectionSpecSchema>;

export const temporalSchema = z.strictObject({
  address: z.string().min(1).optional(),
  namespace: z.string().min(1).optional(),
  taskQueue: z.string().min(1).default('pg-live-migrate'),
  /** Name of an environment variable holding a Temporal Cloud API key. */
  apiKeyEnv: envVarName.optional(),
  tls: z
    .union([
      z.boolean(),
      z.strictObject({
        serverNameOverride: z.string().optional(),
        serverRootCaCertPath: z.string().optional(),
        clientCertPath: z.string().optional(),
        clientKeyPath: z.string().optional(),
      }),
    ])
    .optional(),
});

export const workerSchema = z.strictObject({
  maxConcurrentActivityTaskExecutions: z.number().int().min(1).max(1000).optional(),
  maxConcurrentWorkflowTaskExecutions: z.number().int().min(2).max(1000).optional(),
  shutdownGraceTime: z.string().default('30s'),
  /** Serve Prometheus metrics on this port (config/metrics.ts); off when unset. */
  metricsPort: z
    .number()
    .int('must be a whole number')
    .min(1)
    .max(65535, 'must be a port from 1 to 65535')
    .nullable()
    .optional(),
});

/** What every process needs to reach the servers: connections, Temporal, worker tuning. */
export const siteSchema = z.strictObject({
  old: connectionSpecSchema.default({ urlEnv: 'OLD_DATABASE_URL' }),
  new: connectionSpecSchema.default({ urlEnv: 'NEW_DATABASE_URL' }),
  temporal: temporalSchema.default({ taskQueue: 'pg-live-migrate' }),
  worker: workerSchema.default({ shutdownGraceTime: '30s' }),
});
export type SiteConfig = z.infer<typeof siteSchema>;

export const tableSchema = z.union([
  z.string().regex(TABLE_NAME, 'must be a table name such as public.orders or orders'),
  z.strictObject({
    name: z.string().regex(TABLE_NAME, 'must be a table name such as public.orders or orders'),
    /** Copy the rows matching this SQL condition first, e.g. "last_seen_at > now() - interval '7 days'". */
    hotRowsWhere: z.string().trim().min(1, 'must be a SQL condition on the table').optional(),
    /**
     * A Citus target: the column the table is distributed by on new (a column of its primary key);
     * a table the migration creates is distributed by it, one that exists must be.
     */
    distributionColumn: z
      .string()
      .regex(new RegExp(`^${IDENTIFIER}$`), 'must be a column name such as customer_id')
      .optional(),
  }),
]);

const optionalLimit = (schema: z.ZodNumber, fallback: number | null) => schema.nullable().default(fallback);

/** The brake that follows the application's latency (model/latency-throttle.ts). */
const latencyTargetSchema = z.strictObject({
  ratio: z
    .number()
    .min(1.1, "must be at least 1.1 (the application's p99 may grow to this many times its baseline)")
    .default(DEFAULT_LATENCY_TARGET.ratio),
  floorMs: z.number().min(0).default(DEFAULT_LATENCY_TARGET.floorMs),
  intervalMs: z
    .number()
    .int('must be a whole number')
    .min(1000, 'must be at least 1000 ms')
    .max(600_000)
    .default(DEFAULT_LATENCY_TARGET.intervalMs),
  minRowsPerSecond: z
    .number()
    .positive('must be above 0 (the copy must always end)')
    .default(DEFAULT_LATENCY_TARGET.minRowsPerSecond),
  probeQuery: z
    .string()
    .trim()
    .regex(
      /^select\b[^;]*$/i,
      'must be one SELECT statement (no semicolon): it runs on the source while copying',
    )
    .default(DEFAULT_LATENCY_TARGET.probeQuery),
  minSamples: z.number().int('must be a whole number').min(1).default(DEFAULT_LATENCY_TARGET.minSamples),
  startRowsPerSecond: z
    .number()
    .positive('must be above 0 (or null: every copy starts at full speed)')
    .nullable()
    .default(DEFAULT_LATENCY_TARGET.startRowsPerSecond!),
  slowStartMinRows: z
    .number()
    .int('must be a whole number')
    .min(0)
    .default(DEFAULT_LATENCY_TARGET.slowStartMinRows!),
});

/** When the backfill slows down or waits; null switches a limit off. */
export const throttleSchema = z.strictObject({
  maxRowsPerSecond: optionalLimit(
    z.number().positive('must be above 0 (or null for no limit)'),
    DEFAULT_THROTTLE.maxRowsPerSecond,
  ),
  maxProbeLatencyMs: optionalLimit(
    z.number().positive('must be above 0 ms (or null to switch the probe off)'),
    DEFAULT_THROTTLE.maxProbeLatencyMs,
  ),
  maxActiveConnections: optionalLimit(
    z.number().int('must be a whole number').min(1, 'must be at least 1 (or null)'),
    DEFAULT_THROTTLE.maxActiveConnections,
  ),
  maxReplicaLagSeconds: optionalLimit(
    z.number().positive('must be above 0 s (or null)'),
    DEFAULT_THROTTLE.maxReplicaLagSeconds,
  ),
  checkIntervalMs: z
    .number()
    .int('must be a whole number')
    .min(100)
    .max(60_000)
    .default(DEFAULT_THROTTLE.checkIntervalMs),
  backoffMs: z
    .number()
    .int('must be a whole number')
    .min(100)
    .max(600_000)
    .default(DEFAULT_THROTTLE.backoffMs),
  latencyTarget: latencyTargetSchema.nullable().default(() => latencyTargetSchema.parse({})),
  niceRatio: z
    .number()
    .min(0, 'must be 0 or more (0: never rest)')
    .max(MAX_NICE_RATIO)
    .default(DEFAULT_THROTTLE.niceRatio),
});

/** A duration such as "10m", "2 hours", "14d", or a number of milliseconds; parsed to milliseconds. */
function duration(fallback: number) {
  return z
    .union([z.number().int().min(0), z.string()])
    .default(fallback)
    .transform((value, ctx) => {
      if (typeof value === 'number') return value;
      try {
        return msToNumber(value as Parameters<typeof msToNumber>[0]);
      } catch {
        ctx.addIssue({ code: 'custom', message: `${value} is not a duration such as 30s, 10m, 2h or 14d` });
        return z.NEVER;
      }
    });
}

const rate = (fallback: number) => z.number().min(0).max(1, 'is a fraction from 0 to 1').default(fallback);

/** The read ramp, its gates, the write switch and the soak before retiring old. */
export const cutoverSchema = z.strictObject({
  /** Percent of reads served by new at each `live` step; rising, ending with 100. */
  readSteps: z
    .array(z.number())
    .default(DEFAULT_READ_STEPS)
    .superRefine((steps, ctx) => {
      for (const problem of readStepProblems(steps)) ctx.addIssue({ code: 'custom', message: problem });
    }),
  /** How long each step from shadow on runs before its gates are read. */
  stepSoak: duration(DEFAULT_STEP_SOAK_MS),
  /** What a failed gate in `live` does: hold there, or step back one read step and hold. */
  onGateFailure: z.enum(['hold', 'step-back']).default('hold'),
  /** Stages entered only after `migrate approve`. Retiring old always needs approval. */
  approvals: z.array(z.enum(APPROVAL_POINTS)).default(DEFAULT_APPROVALS),
  gates: z
    .strictObject({
      maxShadowMismatchRate: rate(DEFAULT_GATES.maxShadowMismatchRate),
      minShadowComparisons: z.number().int().min(0).default(DEFAULT_GATES.minShadowComparisons),
      maxNewErrorRate: rate(DEFAULT_GATES.maxNewErrorRate),
      maxLatencyRatio: z.number().positive().default(DEFAULT_GATES.maxLatencyRatio),
      maxReconciliationBacklog: z.number().int().min(0).default(DEFAULT_GATES.maxReconciliationBacklog),
      maxQueryRatio: z.number().positive().nullable().default(DEFAULT_GATES.maxQueryRatio),
    })
    .default(() => ({ ...DEFAULT_GATES })),
  /** How long routers get to acknowledge the write fence before the switch gives up. */
  fenceTimeout: duration(10_000),
  /** How long old stays read-only and reverse-synced after `complete` before it may be retired. */
  soak: duration(DEFAULT_COMPLETION_SOAK_MS),
});

export const verificationSchema = z.strictObject({
  chunkSize: z.number().int().min(100).max(1_000_000).default(10_000),
  partitions: z.number().int().min(1).max(256).default(4),
  /** How long a differing key gets to settle (a write in flight) before it counts. */
  settle: duration(2000),
  /**
   * How long verification waits for the changes still pending on differing keys to be synced before
   * it counts them as in flight (never as differences).
   */
  inFlightWait: duration(60_000),
});

export const queryBenchmarkSchema = z.strictObject({
  /** Reads to time on both sides; a statement that is not provably a read is never run. */
  queries: z
    .array(
      z.strictObject({
        name: z.string().min(1),
        sql: z.string().min(1),
        params: z.array(z.unknown()).optional(),
      }),
    )
    .default([]),
  /** Also time this many of old's top statements from pg_stat_statements, when it is installed. */
  topStatements: z.number().int().min(0).max(100).default(5),
  runs: z.number().int().min(1).max(1000).default(20),
});

/** A whole migration: the site plus what to move and how fast. */
export const migrationSchema = siteSchema.extend({
  name: z
    .string()
    .regex(
      MIGRATION_NAME,
      'must be 1-63 lowercase letters, digits, dots, dashes or underscores, such as orders-to-citus',
    ),
  tables: z.array(tableSchema).min(1, 'must list at least one table'),
  chunkSize: z.number().int('must be a whole number').min(1).max(100_000).default(1000),
  /** Key ranges of each table copied side by side, each a child workflow. */
  partitions: z.number().int('must be a whole number').min(1).max(256).default(DEFAULT_PARTITIONS),
  /** Chunk activities in flight in each partition. */
  chunksInFlight: z.number().int('must be a whole number').min(1).max(64).default(DEFAULT_CHUNKS_IN_FLIGHT),
  /** Consecutive chunks one activity copies; each chunk is still its own transaction and checkpoint. */
  chunksPerActivity: z
    .number()
    .int('must be a whole number')
    .min(1)
    .max(64)
    .default(DEFAULT_CHUNKS_PER_ACTIVITY),
  throttle: throttleSchema.default(() => throttleSchema.parse({})),
  /** Create a table on new from old's definition when new does not have it. */
  createTables: z.boolean().default(false),
  cutover: cutoverSchema.default(() => cutoverSchema.parse({})),
  verification: verificationSchema.default(() => verificationSchema.parse({})),
  queryBenchmark: queryBenchmarkSchema.default(() => queryBenchmarkSchema.parse({})),
});
export type MigrationConfig = z.infer<typeof migrationSchema>;

/** A table as `schema.table`, with `public` filled in when the config omits the schema. */
export function qualifiedTableName(table: z.infer<typeof tableSchema>): { schema: string; table: string } {
  const name = typeof table === 'string' ? table : table.name;
  const dot = name.indexOf('.');
  return dot < 0
    ? { schema: 'public', table: name }
    : { schema: name.slice(0, dot), table: name.slice(dot + 1) };
}
