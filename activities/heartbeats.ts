// Every activity heartbeats while it runs, whatever it is doing (a long statement, a lock wait), so
// that with the heartbeat timeout every workflow sets, a worker that dies mid-activity is noticed in
// seconds and the activity retried elsewhere, instead of at its start-to-close timeout (minutes).
// An activity's own heartbeats (with progress details, which a retry resumes from) still go out as
// they are; in the pauses between them the last details are repeated, never replaced.
import { Context } from '@temporalio/activity';

/** How often an activity that has not heartbeated itself is heartbeated for. */
const BEAT_MS = 2000;

export async function withHeartbeats<T>(work: () => Promise<T>): Promise<T> {
  let context: Context;
  try {
    context = Context.current();
  } catch {
    return work(); // called directly, outside a worker (tests of an activity's logic)
  }
  // The SDK's heartbeat is a field of the context: replaced for this activity only, then put back.
  const beating = context as { heartbeat: (details?: unknown) => void };
  const own = context.heartbeat;
  // A retry starts from its predecessor's details until it heartbeats its own.
  let details: unknown = context.info.heartbeatDetails;
  let last = Date.now();
  beating.heartbeat = (next?: unknown) => {
    details = next;
    last = Date.now();
    own(next);
  };
  const timer = setInterval(() => {
    if (Date.now() - last < BEAT_MS) return;
    last = Date.now();
    own(details);
  }, BEAT_MS);
  try {
    return await work();
  } finally {
    clearInterval(timer);
    beating.heartbeat = own;
  }
}
