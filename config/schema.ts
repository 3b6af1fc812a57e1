// The migration config file's shape, validated with zod: what an operator may write, with defaults.
// Secrets never live here: a connection names an environment variable that holds them.
import { z } from 'zod';

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
      if (parsed.password !== '') {
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
  }),
]);

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
  concurrency: z.number().int('must be a whole number').min(1).max(64).default(4),
  /** Create a table on new from old's definition when new does not have it. */
  createTables: z.boolean().default(false),
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
