// A workflow interceptor (registered in the worker's bundle): every log line a workflow writes
// carries the migration's name and the table as fields, from the search attributes the workflow set
// (so the log can be filtered by them as the Web UI is). Adds no command: replay-safe.
import { workflowInfo, type WorkflowInterceptorsFactory } from '@temporalio/workflow';
import { MIGRATION_NAME, MIGRATION_TABLE } from './search-attributes';

export const interceptors: WorkflowInterceptorsFactory = () => ({
  outbound: [
    {
      getLogAttributes: (input, next) => {
        const attributes = workflowInfo().typedSearchAttributes;
        const migration = attributes.get(MIGRATION_NAME);
        const table = attributes.get(MIGRATION_TABLE);
        return next({
          ...input,
          ...(migration !== undefined && { migration }),
          ...(table !== undefined && { table }),
        });
      },
    },
  ],
});
