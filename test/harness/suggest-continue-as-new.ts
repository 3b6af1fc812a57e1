// A workflow interceptor for workflow tests: the time-skipping test server never suggests
// continue-as-new, so this does what a real server's `limit.historyCount.suggestContinueAsNew` does,
// for workflows started with the memo `suggestContinueAsNewAfter` (a history length): from that
// many events on, workflowInfo().continueAsNewSuggested is true. Other workflows see the server's
// answer untouched. It reaches the SDK's activator (internal API: no public way sets the flag), and
// runs after the SDK copied the server's flag for the activation, before any job of it.
import { workflowInfo, type WorkflowInterceptorsFactory } from '@temporalio/workflow';
import { getActivator } from '@temporalio/workflow/lib/global-attributes';

export const SUGGEST_CONTINUE_AS_NEW_AFTER = 'suggestContinueAsNewAfter';

export const interceptors: WorkflowInterceptorsFactory = () => ({
  internals: [
    {
      activate(input, next) {
        const after = workflowInfo().memo?.[SUGGEST_CONTINUE_AS_NEW_AFTER];
        if (typeof after === 'number' && workflowInfo().historyLength >= after) {
          getActivator().mutateWorkflowInfo((info) => ({ ...info, continueAsNewSuggested: true }));
        }
        next(input);
      },
    },
  ],
});
