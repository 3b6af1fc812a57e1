// An activity interceptor (registered on the worker): every log line of an activity, the SDK's own
// ("Activity started", "Activity failed") and the project's (`log` from @temporalio/activity), carries
// the migration's name and the table of the activity's input as fields, as workflow lines do
// (workflows/log-attributes.ts), so the worker's log can be filtered by them.
import type { ActivityInterceptorsFactory } from '@temporalio/worker';

export interface ActivityLogFields {
  migration?: string;
  table?: string;
}

/** `migration` and `table` (`schema.table`) of an activity's first argument, where it has them. */
export function activityLogFields(args: readonly unknown[]): ActivityLogFields {
  const input = args[0];
  if (typeof input !== 'object' || input === null) return {};
  const { migration, table } = input as { migration?: unknown; table?: unknown };
  const fields: ActivityLogFields = {};
  if (typeof migration === 'string') fields.migration = migration;
  if (typeof table === 'string') fields.table = table;
  else if (typeof table === 'object' && table !== null) {
    const ref = table as { schema?: unknown; table?: unknown };
    if (typeof ref.schema === 'string' && typeof ref.table === 'string') {
      fields.table = `${ref.schema}.${ref.table}`;
    }
  }
  return fields;
}

/** Reads the fields when the activity starts; adds them to each of its log lines from then on. */
export const activityLogAttributes: ActivityInterceptorsFactory = () => {
  let fields: ActivityLogFields = {};
  return {
    inbound: {
      execute: (input, next) => {
        fields = activityLogFields(input.args);
        return next(input);
      },
    },
    outbound: {
      getLogAttributes: (input, next) => next({ ...input, ...fields }),
    },
  };
};
