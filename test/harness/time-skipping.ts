// For workflow tests: Temporal's time-skipping test server (provision/temporal-test-server.ts
// finds or installs it), started once per test file, with the workflows bundled once and a worker
// that runs them against fake activities. `stop` ends the worker, then the server (the JVM the
// SDK started), also when a test failed: call it from `after`.
import { after, afterEach, before, beforeEach } from 'node:test';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { bundleWorkflowCode, Worker, type WorkflowBundle } from '@temporalio/worker';
import { findOrInstallTemporalTestServer } from '../../provision/temporal-test-server';
import { encodeSearchAttributeIndexedValueType } from '@temporalio/common/lib/search-attributes';
import { SEARCH_ATTRIBUTES } from '../../workflows/search-attributes';
import { FakeActivities } from './fake-activities';
import { endMigrations } from './migration-workflow';
import { installQuietRuntime } from './servers';
import { workflowsPath } from './workflow-histories';

export interface TimeSkipping {
  env: TestWorkflowEnvironment;
  taskQueue: string;
  stop(): Promise<void>;
}

let bundle: Promise<WorkflowBundle> | undefined;

/** The workflows as the worker runs them, with the test interceptor that suggests continue-as-new. */
function workflowBundle(): Promise<WorkflowBundle> {
  bundle ??= bundleWorkflowCode({
    workflowsPath,
    workflowInterceptorModules: [require.resolve('./suggest-continue-as-new')],
    logger: {
      log: () => undefined,
      trace: () => undefined,
      debug: () => undefined,
      info: () => undefined,
      warn: () => undefined,
      error: () => undefined,
    },
  });
  return bundle;
}

/**
 * Starts the test server and a worker on `taskQueue` with `activities` (plain functions). The
 * worker runs until `stop`; a failure to start leaves nothing running.
 */
export async function startTimeSkipping(taskQueue: string, activities: object): Promise<TimeSkipping> {
  installQuietRuntime();
  const server = await findOrInstallTemporalTestServer({
    log: (message) => {
      if (!message.includes('project-local')) console.log(message);
    },
  });
  const env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path: server.path } },
  });
  let worker: Worker;
  try {
    // The workflows set the project's own search attributes; a real cluster has them registered.
    await env.connection.operatorService.addSearchAttributes({
      namespace: env.namespace ?? 'default',
      searchAttributes: Object.fromEntries(
        SEARCH_ATTRIBUTES.map((key) => [key.name, encodeSearchAttributeIndexedValueType(key.type)!]),
      ),
    });
    worker = await Worker.create({
      connection: env.nativeConnection,
      taskQueue,
      workflowBundle: await workflowBundle(),
      activities,
    });
  } catch (err) {
    await env.teardown();
    throw err;
  }
  const running = worker.run();
  return {
    env,
    taskQueue,
    stop: async () => {
      try {
        worker.shutdown();
        await running;
      } finally {
        await env.teardown();
      }
    },
  };
}

/**
 * For a test file: the server and worker started once before its tests and stopped after them
 * (also when one failed), the fakes back to a healthy stack before each test, and the migrations a
 * test started ended after it.
 */
export function timeSkippingSuite(taskQueue: string): { fakes: FakeActivities; ts: () => TimeSkipping } {
  const fakes = new FakeActivities();
  let ts: TimeSkipping | undefined;
  before(async () => {
    ts = await startTimeSkipping(taskQueue, fakes.activities());
  });
  after(async () => {
    fakes.reset(); // opens every gate a fake still waits at, so the worker can stop
    await ts?.stop();
  });
  beforeEach(() => fakes.reset());
  afterEach(async () => {
    const left = fakes.openGates();
    if (await endMigrations()) {
      // A workflow whose task never ended (the test server sometimes writes an activity's start
      // after the workflow asked to cancel it, and the SDK fails the task on it) was terminated,
      // which leaves time skipping locked for every later test of the file: start afresh.
      console.log(
        '  a migration had to be terminated; restarting the time-skipping server for the next tests',
      );
      fakes.reset();
      await ts?.stop();
      ts = undefined;
      ts = await startTimeSkipping(taskQueue, fakes.activities());
    }
    if (left > 0) {
      throw new Error(
        `the test left ${left} fake activities waiting at a gate: open each before the workflows end (fake-activities.ts, openGates)`,
      );
    }
  });
  return {
    fakes,
    ts: () => {
      if (ts === undefined) throw new Error('the time-skipping server did not start');
      return ts;
    },
  };
}
