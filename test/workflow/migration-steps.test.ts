// The migration workflow's steps, in a time-skipping test server with fake activities
// (harness/time-skipping.ts, harness/fake-activities.ts): the way forward from off to retire with
// its soaks (ten minutes a step, fourteen days at the end, let pass by skipping time), preparing
// and its refusal, each gate failing, the step-back, the approval points, the forward switch and
// its failures, work that fails for a cause and the trouble the migration's own workflows report,
// and continue-as-new carrying the state. Most tests start where they are about, from the state a
// run carries into the next (harness/migration-workflow.ts, carriedAt).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { WorkflowFailedError } from '@temporalio/client';
import { NO_STATS } from '../../model/gate-stats';
import type { MigrationSettings } from '../../workflows/migration';
import type { ReconciliationStatus } from '../../model/messages';
import { DEFAULT_GATES } from '../../model/migration-plan';
import {
  REMOVAL_CALLS,
  callText,
  fault,
  gateFigures,
  queryBenchmark,
  reconciliationStatus,
} from '../harness/fake-activities';
import {
  COMPLETION_SOAK_MS,
  MigrationUnderTest,
  STEP_SOAK_MS,
  carriedAt,
  migrationInput,
  syncFailure,
  backfillingMigration,
} from '../harness/migration-workflow';
import { timeSkippingSuite } from '../harness/time-skipping';

const { fakes, ts } = timeSkippingSuite('migration-steps');

/** What readGateFigures answers: `changes` over nothing measured, from two routers. */
function figures(changes: Parameters<typeof gateFigures>[0]) {
  return { ...gateFigures(changes), routers: 2, snapshot: {} };
}

/** The activities the migration workflow itself called, by name, in order (children's left out). */
function migrationCalls(): string[] {
  return fakes
    .called()
    .filter((call) => call.workflowType === 'migrationWorkflow')
    .map((call) => call.activity);
}

describe('the migration workflow, step by step', () => {
  it('goes from off through every step, soaks each, switches writes, soaks fourteen days and retires on approval', async () => {
    const migration = await MigrationUnderTest.start(ts(), migrationInput('forward'));
    const soaks: number[] = [];
    // shadow, live 25%, live 100%, switched and complete soak before their gates; then complete's soak.
    for (let i = 0; i < 6; i++) soaks.push(await migration.soakPasses());
    assert.deepEqual(soaks, [...Array<number>(5).fill(STEP_SOAK_MS), COMPLETION_SOAK_MS]);
    const held = await migration.heldFor('retire', 'complete');
    assert.match(held.held!.reason, /^the soak is over: approve to retire/);
    assert.equal(held.phase, 'held');
    // Reads go to new from live 25%: first the fence on shadow, until the mirrors writes answered
    // without waiting for have landed.
    assert.deepEqual(fakes.stagesSet(), [
      'dual_write 0',
      'shadow 0',
      'shadow 0 +fence',
      'live 25',
      'live 100',
      'live 100 +fence',
      'complete 100',
    ]);
    // The forward switch, in its order (workflows/write-switch.ts): reconciliation stops, the fence,
    // every router acknowledges, authority moves (guard, drain, sequences, capture, stage), and
    // reconciliation starts again the other way.
    const switchCalls = migrationCalls();
    const from = switchCalls.indexOf('stopReconciliation');
    assert.deepEqual(switchCalls.slice(from, from + 5), [
      'stopReconciliation',
      'setMigrationStage',
      'awaitRouterFence',
      'moveWriteAuthority',
      'ensureReconciliation',
    ]);
    assert.deepEqual(
      fakes
        .inputs('moveWriteAuthority')
        .map(({ from, to, stage, readPercent }) => [from, to, stage, readPercent]),
      [['old', 'new', 'switched', 100]],
    );
    assert.deepEqual(
      fakes.inputs('ensureReconciliation').map(({ from, to }) => `${from}→${to}`),
      ['old→new', 'new→old'],
    );
    assert.equal(held.switches.length, 1);
    assert.equal(held.switches[0]!.direction, 'to-new');
    assert.equal(held.verifiedClean, true);
    assert.equal(held.tables[0]!.backfillDone, true);

    const before = fakes.calls.length;
    assert.deepEqual(await migration.approve(), { released: held.held!.reason });
    const final = await migration.result();
    assert.equal(final.phase, 'retired');
    assert.deepEqual(fakes.calls.slice(before).map(callText), ['stopReconciliation', ...REMOVAL_CALLS]);
    assert.match(
      final.events.at(-1)!.text,
      /^retired: capture, guards, claims and flags removed, helper tables dropped/,
    );
  });

  it('prepares by binding the servers, checking and claiming the tables, capture on old and reconciliation, with warnings shown', async () => {
    fakes.on('prepareTables', (input) => ({
      tables: input.tables.map(({ table }) => ({ table, estimatedRows: 5000 })),
      created: [],
      warnings: ['new already holds rows in public.orders'],
    }));
    const migration = await MigrationUnderTest.start(
      ts(),
      migrationInput('prepares', { approvals: ['dual_write'] }),
    );
    const held = await migration.heldFor('approval', 'off');
    assert.equal(held.held!.reason, "entering dual_write needs an operator's approval");
    assert.deepEqual(migrationCalls(), [
      'bindServers',
      'prepareTables',
      'installChangeCapture',
      'ensureReconciliation',
    ]);
    assert.deepEqual(fakes.inputs('installChangeCapture')[0]!.connection, 'old');
    assert.deepEqual(held.warnings, ['new already holds rows in public.orders']);
    assert.equal(held.tables[0]!.estimatedRows, 5000);
    assert.ok(held.events.some((event) => event.text === 'warning: new already holds rows in public.orders'));
  });

  it('a refusal while preparing ends the migration with the reason, after removing what preparing put in place', async () => {
    fakes.on('prepareTables', () => {
      throw fault('MigrationRefused', 'table "public"."orders" has no primary key');
    });
    const migration = await MigrationUnderTest.start(ts(), migrationInput('refused'));
    await assert.rejects(migration.result(), WorkflowFailedError);
    const status = await migration.status();
    assert.equal(status.error, 'table "public"."orders" has no primary key');
    assert.match(status.events.at(-1)!.text, /^refused: table "public"."orders" has no primary key/);
    assert.deepEqual(fakes.called().map(callText), ['bindServers', 'prepareTables', ...REMOVAL_CALLS]);
  });

  it('completes the tables it created on new after the backfill and before verifying', async () => {
    fakes.on('prepareTables', (input) => ({
      tables: input.tables.map(({ table }) => ({ table, estimatedRows: 10 })),
      created: [{ schema: 'public', table: 'orders' }],
      warnings: [],
    }));
    const input = migrationInput('creates', { approvals: ['shadow'] });
    input.tables[0]!.createTargetTable = true;
    const migration = await MigrationUnderTest.start(ts(), input);
    const held = await migration.heldFor('approval', 'dual_write');
    assert.deepEqual(fakes.inputs('prepareTables')[0]!.tables[0]!.createIfMissing, true);
    const order = fakes.called().map((call) => `${call.workflowType}:${call.activity}`);
    const completed = order.indexOf('migrationWorkflow:completeTargetTables');
    assert.ok(completed > order.indexOf('backfillTableWorkflow:planPartitions'), order.join(', '));
    assert.ok(completed < order.indexOf('verificationWorkflow:verifyRange'), order.join(', '));
    assert.deepEqual(fakes.inputs('completeTargetTables')[0]!.tables, [
      { schema: 'public', table: 'orders' },
    ]);
    assert.ok(
      held.events.some((event) =>
        /^tables created on new completed after the backfill: indexes of public.orders$/.test(event.text),
      ),
    );
  });

  it('waits for an operator before entering each approval point, and enters it once approved', async () => {
    const migration = await MigrationUnderTest.start(
      ts(),
      migrationInput('approvals', { approvals: ['dual_write', 'shadow', 'live', 'switched', 'complete'] }),
    );
    const expected: Array<[string, string]> = [
      ['off', 'dual_write'],
      ['dual_write', 'shadow'],
      ['shadow', 'live 25%'],
      ['live 25%', 'live 100%'],
      ['live 100%', 'switched'],
      ['switched', 'complete'],
    ];
    for (const [at, entering] of expected) {
      if (at !== 'off' && at !== 'dual_write') await migration.soakPasses();
      const held = await migration.heldFor('approval', at);
      assert.equal(held.held!.reason, `entering ${entering} needs an operator's approval`);
      const setBefore = fakes.stagesSet().length;
      assert.deepEqual(await migration.approve('lead'), { released: held.held!.reason });
      await migration.until(`entering ${entering}`, (status) => status.step === entering);
      assert.ok(fakes.stagesSet().length > setBefore);
      assert.ok(
        (await migration.status()).events.some(
          (event) => event.text === `approved by lead: ${held.held!.reason}`,
        ),
      );
    }
  });

  it('runs the query benchmark once in shadow and reports it', async () => {
    fakes.on('benchmarkQueries', () => queryBenchmark({ 'by id': 1.2 }));
    const input = migrationInput('benchmark', {
      queryBenchmark: {
        queries: [{ name: 'by id', sql: 'SELECT * FROM orders WHERE id = $1', params: [1] }],
        topStatements: 0,
        runs: 5,
      },
    });
    const migration = await MigrationUnderTest.start(ts(), { ...input, resume: carriedAt(input, 'shadow') });
    await migration.soakPasses();
    const status = await migration.until('live 25%', (s) => s.step === 'live 25%');
    assert.equal(fakes.called('benchmarkQueries').length, 1);
    assert.deepEqual(fakes.inputs('benchmarkQueries')[0]!.runs, 5);
    assert.equal(status.queryBenchmark?.queries[0]?.ratioP50, 1.2);
    assert.ok(status.events.some((event) => event.text === 'query benchmark: by id p50 1.20×'));
  });
});

describe('the gates', () => {
  const cases: Array<{
    name: string;
    step: string;
    settings?: Partial<MigrationSettings>;
    figures?: ReturnType<typeof figures>;
    reconciliation?: ReconciliationStatus | null;
    verifiedClean?: boolean;
    benchmarkRatio?: number;
    reason: string;
    check: string;
  }> = [
    {
      name: 'a shadow mismatch rate over its limit holds shadow',
      step: 'shadow',
      figures: figures({ shadowMismatchRate: 0.5, totals: { shadowCompared: 10, shadowMismatched: 5 } }),
      reason: 'shadow: shadow mismatch rate: 5 of 10 shadow reads differed',
      check: 'shadow mismatch rate',
    },
    {
      name: 'too few shadow comparisons hold shadow',
      step: 'shadow',
      settings: { gates: { ...DEFAULT_GATES, minShadowComparisons: 100 } },
      figures: figures({ shadowMismatchRate: 0, totals: { shadowCompared: 10 } }),
      reason: 'shadow: shadow comparisons: only 10 shadow reads were compared; the gate needs 100',
      check: 'shadow comparisons',
    },
    {
      name: 'an error rate on new over its limit holds a live step',
      step: 'live 25%',
      figures: figures({ newErrorRate: 0.1, totals: { readsNew: 100, readsNewFailed: 10 } }),
      reason: 'live 25%: error rate on new: 10 of 100 reads on new failed',
      check: 'error rate on new',
    },
    {
      name: 'a read latency ratio over its limit holds a live step',
      step: 'live 100%',
      figures: figures({ readLatencyRatio: 3.5 }),
      reason: "live 100%: read latency new/old: mean read time on new is 3.50× old's",
      check: 'read latency new/old',
    },
    {
      name: 'an error rate on new over its limit holds switched',
      step: 'switched',
      figures: figures({ newErrorRate: 0.5, totals: { readsNew: 4, readsNewFailed: 2 } }),
      reason: 'switched: error rate on new: 2 of 4 reads on new failed',
      check: 'error rate on new',
    },
    {
      name: 'a reconciliation backlog over its limit holds the step',
      step: 'complete',
      reconciliation: reconciliationStatus({
        backlog: 5000,
        changeLogBacklog: 4990,
        queuedDiscrepancyKeys: 10,
        lagSeconds: 12.5,
      }),
      reason: 'complete: reconciliation backlog: 4990 changes and 10 discrepancy keys waiting, lag 12.5 s',
      check: 'reconciliation backlog',
    },
    {
      name: 'reconciliation not running fails the backlog gate',
      step: 'live 25%',
      reconciliation: null,
      reason: 'live 25%: reconciliation backlog: reconciliation is not running',
      check: 'reconciliation backlog',
    },
    {
      name: 'a table reconciliation keeps failing to sync fails the failures gate',
      step: 'shadow',
      reconciliation: reconciliationStatus({ failing: [syncFailure('public.orders', '23505')] }),
      reason: 'shadow: reconciliation failures: public.orders: duplicate key value (3 tries)',
      check: 'reconciliation failures',
    },
    {
      name: 'no clean verification since dual_write fails the verification gate',
      step: 'live 25%',
      verifiedClean: false,
      reason: 'live 25%: last verification clean: no clean verification since dual_write',
      check: 'last verification clean',
    },
    {
      name: 'a query benchmark ratio over its limit holds shadow',
      step: 'shadow',
      settings: {
        gates: { ...DEFAULT_GATES, maxQueryRatio: 2 },
        queryBenchmark: { queries: [], topStatements: 5, runs: 3 },
      },
      benchmarkRatio: 3,
      reason: 'shadow: query p50 ratio new/old: slowest on new: top-1 at 3.00×',
      check: 'query p50 ratio new/old',
    },
    {
      name: 'dual_write holds on its gates after verifying, without a soak',
      step: 'dual_write',
      reconciliation: reconciliationStatus({ backlog: 2000, changeLogBacklog: 2000 }),
      reason: 'dual_write: reconciliation backlog: 2000 changes and 0 discrepancy keys waiting, lag 0.0 s',
      check: 'reconciliation backlog',
    },
  ];
  for (const [i, gate] of cases.entries()) {
    it(gate.name, async () => {
      if (gate.figures !== undefined) {
        const failing = gate.figures;
        // The baseline read at the start of the soak, then the gate read at its end.
        fakes.on('readGateFigures', (input) => (input.baseline === undefined ? figures({}) : failing));
      }
      if (gate.reconciliation !== undefined) {
        const reconciliation = gate.reconciliation;
        fakes.on('reconciliationStatus', () => reconciliation);
      }
      if (gate.benchmarkRatio !== undefined) {
        const ratio = gate.benchmarkRatio;
        fakes.on('benchmarkQueries', () => queryBenchmark({ 'top-1': ratio }));
      }
      const input = migrationInput(`gate-${i}`, gate.settings);
      const carried = carriedAt(input, gate.step);
      if (gate.verifiedClean !== undefined) carried.status.verifiedClean = gate.verifiedClean;
      const migration = await MigrationUnderTest.start(ts(), { ...input, resume: carried });
      if (gate.step !== 'dual_write') assert.equal(await migration.soakPasses(), STEP_SOAK_MS);
      const held = await migration.heldFor('gate', gate.step);
      assert.equal(held.held!.reason, gate.reason);
      const failed = held.lastGate!.checks.filter((check) => !check.ok).map((check) => check.name);
      assert.deepEqual(failed, [gate.check]);
      assert.equal(held.lastGate!.passed, false);
      assert.equal(held.lastGate!.step, gate.step);
      // The window is the soak, in workflow time (which also moves on in real time while it runs).
      const window = held.lastGate!.windowMs;
      assert.ok(
        gate.step === 'dual_write' ? window === 0 : window >= STEP_SOAK_MS && window < STEP_SOAK_MS + 60_000,
        String(window),
      );
    });
  }

  it('the gate read covers the soak window only: its baseline is the figures at the start', async () => {
    const snapshot = { router: { ...NO_STATS, readsOld: 7 } };
    fakes.on('readGateFigures', (input) => ({
      ...figures({}),
      snapshot: input.baseline === undefined ? snapshot : {},
    }));
    const input = migrationInput('baseline');
    const migration = await MigrationUnderTest.start(ts(), {
      ...input,
      resume: carriedAt(input, 'live 25%'),
    });
    await migration.soakPasses();
    await migration.until('live 100%', (status) => status.step === 'live 100%');
    const reads = fakes.inputs('readGateFigures');
    assert.equal(reads[0]!.baseline, undefined);
    assert.deepEqual(reads[1]!.baseline, snapshot);
  });

  it('with step-back, a failed live gate goes back one read step, records it as a rollback by the gate, and holds', async () => {
    fakes.on('readGateFigures', (input) =>
      input.baseline === undefined
        ? figures({})
        : figures({ newErrorRate: 0.2, totals: { readsNew: 10, readsNewFailed: 2 } }),
    );
    const input = migrationInput('stepback', { readSteps: [20, 60, 100], onGateFailure: 'step-back' });
    const migration = await MigrationUnderTest.start(ts(), {
      ...input,
      resume: carriedAt(input, 'live 60%'),
    });
    await migration.soakPasses();
    const held = await migration.heldFor('gate');
    assert.equal(held.step, 'live 20%');
    assert.equal(
      held.held!.reason,
      'live 60%: error rate on new: 2 of 10 reads on new failed; stepped back to live 20%',
    );
    assert.deepEqual(fakes.stagesSet(), ['live 20']);
    assert.deepEqual(
      held.rollbacks.map(({ from, to, by }) => [from, to, by]),
      [['live 60%', 'live 20%', 'gate']],
    );

    // Measured again once mended: live 20% passes and the ramp climbs again.
    fakes.on('readGateFigures', () => figures({}));
    await migration.resume();
    await migration.soakPasses();
    await migration.until('live 60% again', (status) => status.step === 'live 60%');
  });

  it('with step-back, a failed gate on the first live step holds there: shadow is not a read step', async () => {
    fakes.on('readGateFigures', (input) =>
      input.baseline === undefined ? figures({}) : figures({ readLatencyRatio: 9 }),
    );
    const input = migrationInput('stepback-first', { readSteps: [20, 100], onGateFailure: 'step-back' });
    const migration = await MigrationUnderTest.start(ts(), {
      ...input,
      resume: carriedAt(input, 'live 20%'),
    });
    await migration.soakPasses();
    const held = await migration.heldFor('gate', 'live 20%');
    assert.match(
      held.held!.reason,
      /^live 20%: read latency new\/old: mean read time on new is 9\.00× old's$/,
    );
    assert.deepEqual(fakes.stagesSet(), []);
    assert.deepEqual(held.rollbacks, []);
  });
});

describe('reads going to new', () => {
  it('routers that do not acknowledge the fence before live keep the migration at shadow: it holds, and resume tries again', async () => {
    fakes.on('awaitRouterFence', () => ({ acknowledged: ['router-a'], missing: ['router-b'] }));
    const input = migrationInput('live-fence');
    const migration = await MigrationUnderTest.start(ts(), {
      ...input,
      resume: carriedAt(input, 'shadow', { stepPassed: true }),
    });
    const held = await migration.heldFor('fence', 'shadow');
    assert.equal(
      held.held!.reason,
      'reads did not move to new, everyone stays at shadow: routers did not acknowledge the write fence in time (their mirrors in flight must land first): router-b; resume or approve to try again',
    );
    assert.deepEqual(fakes.stagesSet(), ['shadow 0 +fence', 'shadow 0']);

    fakes.on('awaitRouterFence', () => ({ acknowledged: ['router-a', 'router-b'], missing: [] }));
    await migration.resume();
    const live = await migration.until('live 25%', (status) => status.step === 'live 25%');
    assert.deepEqual(fakes.stagesSet(), ['shadow 0 +fence', 'shadow 0', 'shadow 0 +fence', 'live 25']);
    assert.equal(live.liveFences?.length, 1, 'the fence that let reads go to new is recorded once');
    assert.ok(
      live.events.some((event) =>
        /^writes waited at most \d+ ms for the mirrors in flight before reads went to new$/.test(event.text),
      ),
    );
  });
});

describe('the forward write switch', () => {
  it('routers that do not acknowledge the fence stop the switch: everyone stays on old, it holds, and resume tries again', async () => {
    fakes.on('awaitRouterFence', () => ({ acknowledged: ['router-a'], missing: ['router-b'] }));
    const input = migrationInput('fence');
    const migration = await MigrationUnderTest.start(ts(), {
      ...input,
      resume: carriedAt(input, 'live 100%', { stepPassed: true }),
    });
    const held = await migration.heldFor('switch-failed', 'live 100%');
    assert.equal(
      held.held!.reason,
      'the write switch did not happen, everyone stays on old: routers did not acknowledge the write fence in time: router-b; resume or approve to try again',
    );
    assert.deepEqual(fakes.stagesSet(), ['live 100 +fence', 'live 100']);
    assert.deepEqual(fakes.called('moveWriteAuthority'), []);
    assert.deepEqual(
      fakes.inputs('ensureReconciliation').map(({ from, to }) => `${from}→${to}`),
      ['old→new'],
    );
    assert.deepEqual(
      held.switches.map(({ direction, switched, missing }) => [direction, switched, missing]),
      [['to-new', false, ['router-b']]],
    );

    fakes.on('awaitRouterFence', () => ({ acknowledged: ['router-a', 'router-b'], missing: [] }));
    await migration.resume();
    const switched = await migration.until('switched', (status) => status.step === 'switched');
    assert.deepEqual(
      switched.switches.map(({ switched: done }) => done),
      [false, true],
    );
  });

  it('a switch whose move fails is undone: capture back on old, none on new, old takes writes, the stage it came from; approve tries again', async () => {
    let tries = 0;
    fakes.on('moveWriteAuthority', () => {
      if (++tries === 1)
        throw fault('MigrationRefused', 'changes of public.orders could not be carried from old to new');
      return { changesDrained: 0, stepsMs: {} };
    });
    const input = migrationInput('undo');
    const migration = await MigrationUnderTest.start(ts(), {
      ...input,
      resume: carriedAt(input, 'live 100%', { stepPassed: true }),
    });
    const held = await migration.heldFor('switch-failed', 'live 100%');
    assert.match(
      held.held!.reason,
      /^the write switch did not happen, everyone stays on old: the switch failed and was undone: /,
    );
    const undo = fakes
      .called()
      .slice(fakes.called().findIndex((call) => call.activity === 'moveWriteAuthority') + 1)
      .map(callText);
    assert.deepEqual(undo, [
      'installChangeCapture old',
      'removeChangeCapture new',
      'removeWriteGuard old',
      'setMigrationStage old',
      'ensureReconciliation',
    ]);
    assert.deepEqual(fakes.stagesSet().at(-1), 'live 100');
    await migration.approve();
    await migration.until('switched', (status) => status.step === 'switched');
  });

  it('a table reconciliation cannot carry stops the switch before the fence', async () => {
    fakes.on('stopReconciliation', () =>
      reconciliationStatus({ failing: [syncFailure('public.orders', '23505')] }),
    );
    const input = migrationInput('no-fence');
    const migration = await MigrationUnderTest.start(ts(), {
      ...input,
      resume: carriedAt(input, 'live 100%', { stepPassed: true }),
    });
    const held = await migration.heldFor('switch-failed');
    assert.match(
      held.held!.reason,
      /reconciliation cannot carry every change over: public.orders: duplicate key value/,
    );
    assert.deepEqual(fakes.stagesSet(), []);
    assert.deepEqual(fakes.called('awaitRouterFence'), []);
  });
});

describe('failures and trouble', () => {
  it('work that fails for a schema change holds with the cause; resume checks the schema again, sets the stage anew and goes on', async () => {
    let tries = 0;
    fakes.on('setMigrationStage', (input) => {
      if (input.stage === 'live' && input.readPercent === 100 && ++tries === 1) {
        throw fault('SchemaChanged', 'public.orders changed on new: column note added', 'public.orders');
      }
      return { stage: input.stage, readPercent: input.readPercent ?? 0, version: 1, fenced: false };
    });
    const input = migrationInput('schema');
    const migration = await MigrationUnderTest.start(ts(), {
      ...input,
      resume: carriedAt(input, 'live 25%', { stepPassed: true }),
    });
    const held = await migration.heldFor('failure', 'live 25%');
    assert.equal(held.held!.reason, 'live 25%: public.orders changed on new: column note added');
    assert.deepEqual(held.held!.cause, { code: 'SchemaChanged', table: 'public.orders' });
    await migration.resume();
    const status = await migration.until('live 100%', (s) => s.step === 'live 100%');
    assert.deepEqual(
      fakes.inputs('acceptSchemaChanges').map(({ tables, completeLater }) => [tables, completeLater]),
      [[[{ schema: 'public', table: 'orders' }], []]],
    );
    // The same stage again first, so every router reads the tables' shapes anew.
    assert.deepEqual(fakes.stagesSet(), ['live 100', 'live 25', 'live 100']);
    assert.ok(
      status.events.some(
        (event) => event.text === 'schema checked again after the change: both sides match again',
      ),
    );
  });

  it('a schema check that still fails after resume holds again with its reason and the same cause', async () => {
    fakes.on('setMigrationStage', () => {
      throw fault('SchemaChanged', 'public.orders changed on old', 'public.orders');
    });
    fakes.on('acceptSchemaChanges', () => {
      throw fault('MigrationRefused', 'public.orders still differs: column note only on old');
    });
    const input = migrationInput('schema-again');
    const migration = await MigrationUnderTest.start(ts(), {
      ...input,
      resume: carriedAt(input, 'shadow', { stepPassed: true }),
    });
    await migration.heldFor('failure');
    await migration.resume();
    const held = await migration.until(
      'held again',
      (s) => s.held?.reason === 'public.orders still differs: column note only on old',
    );
    assert.deepEqual(held.held!.cause, { code: 'SchemaChanged', table: 'public.orders' });
    assert.equal(fakes.called('acceptSchemaChanges').length, 1);
  });

  it('a failure another cause makes holds with it; resume retries the work without a schema check', async () => {
    let tries = 0;
    fakes.on('benchmarkQueries', () => {
      if (++tries === 1) throw fault('WrongServers', 'this worker is connected to other servers');
      return { queries: [], skipped: [] };
    });
    const input = migrationInput('wrong-servers', {
      queryBenchmark: { queries: [], topStatements: 3, runs: 1 },
    });
    const migration = await MigrationUnderTest.start(ts(), { ...input, resume: carriedAt(input, 'shadow') });
    const held = await migration.heldFor('failure', 'shadow');
    assert.equal(held.held!.reason, 'shadow: this worker is connected to other servers');
    assert.deepEqual(held.held!.cause, { code: 'WrongServers', table: null });
    await migration.resume();
    await migration.soakPasses();
    await migration.until('live 25%', (s) => s.step === 'live 25%');
    assert.deepEqual(fakes.called('acceptSchemaChanges'), []);
    assert.equal(fakes.called('benchmarkQueries').length, 2);
  });

  it('a backfill partition in trouble holds the migration with the cause; the backfill runs on and resume lets it go on', async () => {
    const { migration, planned } = await backfillingMigration(ts(), fakes, 'backfill-trouble');
    await migration.backfillTrouble('public.orders', 'column "note" does not exist on new', 'SchemaChanged');
    const held = await migration.heldFor('failure', 'dual_write');
    assert.equal(
      held.held!.reason,
      'the backfill of public.orders cannot go on: column "note" does not exist on new',
    );
    assert.deepEqual(held.held!.cause, { code: 'SchemaChanged', table: 'public.orders' });
    await migration.resume();
    await migration.until('checked again', (s) =>
      s.events.some((e) => e.text.startsWith('schema checked again')),
    );
    planned.open();
    await migration.until('shadow', (s) => s.step === 'shadow');
    const backfills = fakes
      .called('planPartitions')
      .filter((call) => call.workflowType === 'backfillTableWorkflow');
    assert.equal(backfills.length, 1, 'one backfill, which ran on');
  });

  it('a table reconciliation cannot sync holds as sync, and the hold ends by itself once the table syncs', async () => {
    const input = migrationInput('sync-clears');
    const migration = await MigrationUnderTest.start(ts(), {
      ...input,
      resume: carriedAt(input, 'live 25%'),
    });
    await migration.until('soaking', (s) => s.phase === 'gating');
    await migration.syncTrouble([syncFailure('public.orders', '23505')]);
    const held = await migration.heldFor('sync', 'live 25%');
    assert.match(
      held.held!.reason,
      /^reconciliation cannot carry changes over: public.orders \(3 tries since 1970-01-01T00:00:00.000Z\): duplicate key value\. It keeps trying and this hold ends by itself once it can; resume asks it to try now, approve goes on regardless$/,
    );
    assert.deepEqual(held.held!.cause, { code: '23505', table: 'public.orders' });
    assert.equal(held.syncFailures.length, 1);
    await migration.syncTrouble([]);
    const recovered = await migration.until(
      'recovered',
      (s) => s.held === null && s.events.some((e) => e.text === 'reconciliation recovered'),
    );
    assert.deepEqual(recovered.syncFailures, []);
    // The soak starts over: the step is measured on a window without the failure.
    await migration.soakPasses();
    await migration.until('live 100%', (s) => s.step === 'live 100%');
  });

  it('a sync failure that only an operator can mend holds as failure; resume checks the schema again', async () => {
    const input = migrationInput('sync-schema');
    const migration = await MigrationUnderTest.start(ts(), {
      ...input,
      resume: carriedAt(input, 'live 25%'),
    });
    await migration.until('soaking', (s) => s.phase === 'gating');
    await migration.syncTrouble([syncFailure('public.orders', 'SchemaChanged', 'column note added on new')]);
    const held = await migration.heldFor('failure', 'live 25%');
    assert.match(
      held.held!.reason,
      /^reconciliation cannot carry changes over: public.orders .*column note added on new\. Mend it, then resume$/,
    );
    assert.deepEqual(held.held!.cause, { code: 'SchemaChanged', table: 'public.orders' });
    await migration.resume();
    await migration.until(
      'checked again',
      (s) => s.held === null && s.events.some((e) => e.text.startsWith('schema checked again')),
    );
    assert.equal(fakes.called('acceptSchemaChanges').length, 1);
  });

  it('a sync failure no retry heals (a refused password) holds as failure with its cause, not as sync', async () => {
    const input = migrationInput('sync-auth');
    const migration = await MigrationUnderTest.start(ts(), {
      ...input,
      resume: carriedAt(input, 'live 25%'),
    });
    await migration.until('soaking', (s) => s.phase === 'gating');
    await migration.syncTrouble([
      syncFailure('(every table)', '28P01', 'password authentication failed for user "lm_migrator"'),
    ]);
    const held = await migration.heldFor('failure', 'live 25%');
    assert.match(held.held!.reason, /password authentication failed.*\. Mend it, then resume$/);
    assert.deepEqual(held.held!.cause, { code: '28P01', table: '(every table)' });
  });

  it('an approval hold gives way to trouble, and comes back once the trouble is gone', async () => {
    const input = migrationInput('gives-way', { approvals: ['switched'] });
    const migration = await MigrationUnderTest.start(ts(), {
      ...input,
      resume: carriedAt(input, 'live 100%', { stepPassed: true }),
    });
    await migration.heldFor('approval', 'live 100%');
    await migration.syncTrouble([syncFailure('public.orders', '23505')]);
    await migration.heldFor('sync', 'live 100%');
    await migration.syncTrouble([]);
    const again = await migration.heldFor('approval', 'live 100%');
    assert.equal(again.held!.reason, "entering switched needs an operator's approval");
    assert.deepEqual(fakes.called('moveWriteAuthority'), []);
  });
});

describe('continue-as-new', () => {
  it('continues as new between steps when the server suggests it, carrying the whole state, and goes on to retire', async () => {
    const migration = await MigrationUnderTest.start(
      ts(),
      migrationInput('continues', { readSteps: [100] }),
      {
        suggestContinueAsNewAfter: 40,
      },
    );
    for (let i = 0; i < 5; i++) await migration.soakPasses();
    const held = await migration.heldFor('retire', 'complete');
    assert.ok(held.runs >= 2, `${held.runs} runs`);
    console.log(`continued as new: ${held.runs} runs`);
    // What the first run did is still known to the last one.
    assert.ok(
      held.events.some((event) => event.text.startsWith('prepared on old:5432/shop → new:5432/shop')),
    );
    assert.equal(held.verifiedClean, true);
    assert.equal(held.switches.length, 1);
    assert.ok(held.soakUntil !== null);
    // Each step ran once: nothing was done twice across the runs.
    assert.equal(fakes.called('prepareTables').length, 1);
    assert.equal(fakes.called('moveWriteAuthority').length, 1);
    assert.deepEqual(fakes.stagesSet(), [
      'dual_write 0',
      'shadow 0',
      'shadow 0 +fence',
      'live 100',
      'live 100 +fence',
      'complete 100',
    ]);
    await migration.approve();
    assert.equal((await migration.result()).phase, 'retired');
  });
});
