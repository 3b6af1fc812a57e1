// The stage store (issue 4, part 3): a stage change reaches routers in other processes, whether
// they listen for notifications or only poll; routers register with the stage version they have
// seen and leave when they stop; bad stages are refused.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ensureHelperSchema } from '../../db/helper-schema';
import { OpenFeature, ProviderEvents } from '@openfeature/server-sdk';
import {
  READ_PERCENT_FLAG,
  STAGE_FLAG,
  STATE_FLAG,
  StageFlagProvider,
} from '../../router/openfeature-provider';
import { listRouters, readStage, setStage, StageWatcher } from '../../db/stage-store';
import { databasePools } from '../harness/servers';
import { startStageWatcherProcess } from '../harness/stage-watchers';
import { waitFor } from '../harness/wait';

describe('stage store: every router follows the migration stage', () => {
  const pools = databasePools();
  const migration = `stages-${randomUUID().slice(0, 8)}`;
  const routers = [
    startStageWatcherProcess(migration, `${migration}-listening`, 'listen'),
    startStageWatcherProcess(migration, `${migration}-polling`, 'poll'),
  ];

  before(async () => {
    await ensureHelperSchema(pools.old);
  });

  after(async () => {
    await Promise.all(routers.map((router) => router.stop()));
    await pools.end();
  });

  it('a change reaches routers in other processes, listening or polling, and each says what it saw', async () => {
    await waitFor('both routers to start', () =>
      Promise.resolve(routers.every((r) => r.seen.some((s) => s.ready))),
    );
    assert.deepEqual(await readStage(pools.old, migration), {
      stage: 'off',
      readPercent: 0,
      version: 0,
      fenced: false,
    });

    const changedAt = Date.now();
    const state = await setStage(pools.old, migration, { stage: 'live', readPercent: 5 });
    assert.deepEqual(state, { stage: 'live', readPercent: 5, version: 1, fenced: false });
    for (const router of routers) {
      const seen = await waitFor('the change', () =>
        Promise.resolve(router.seen.find((s) => s.version === 1)),
      );
      assert.equal(seen?.stage, 'live');
      assert.equal(seen?.readPercent, 5);
    }
    const registered = await waitFor(
      'both routers to report version 1',
      () => listRouters(pools.old, migration),
      (list) => list.length === 2 && list.every((router) => router.version === 1),
    );
    assert.deepEqual(
      registered.map((router) => router.stage),
      ['live', 'live'],
    );
    const delays = routers.map(
      (router) => (router.seen.find((s) => s.version === 1)?.seenAt ?? 0) - changedAt,
    );
    console.log(`  stage change seen after ${delays.join(' ms (listening), ')} ms (polling every 200 ms)`);

    await Promise.all(routers.map((router) => router.stop()));
    assert.deepEqual(await listRouters(pools.old, migration), [], 'stopped routers leave the registry');
  });

  it('serves the stage through OpenFeature and announces a change', async () => {
    const watcher = new StageWatcher(pools.old, migration, { routerId: `${migration}-openfeature` });
    await watcher.start();
    const provider = new StageFlagProvider(watcher);
    await OpenFeature.setProviderAndWait(migration, provider);
    const flags = OpenFeature.getClient(migration);
    try {
      assert.equal(await flags.getStringValue(STAGE_FLAG, 'off'), 'live');
      assert.equal(await flags.getNumberValue(READ_PERCENT_FLAG, 0), 5);
      const changed = new Promise<string[]>((resolve) =>
        flags.addHandler(ProviderEvents.ConfigurationChanged, (details) =>
          resolve(details?.flagsChanged ?? []),
        ),
      );
      await setStage(pools.old, migration, { stage: 'live', readPercent: 25 });
      assert.ok((await changed).includes(READ_PERCENT_FLAG));
      assert.equal(await flags.getNumberValue(READ_PERCENT_FLAG, 0), 25);
      assert.deepEqual(await flags.getObjectValue(STATE_FLAG, {}), {
        stage: 'live',
        readPercent: 25,
        version: 2,
        fenced: false,
      });
      // An unknown flag or a wrong type gives the caller's default and says why.
      const unknown = await flags.getBooleanDetails('migration.nope', true);
      assert.equal(unknown.value, true);
      assert.equal(unknown.errorCode, 'FLAG_NOT_FOUND');
      assert.equal((await flags.getNumberDetails(STAGE_FLAG, 7)).errorCode, 'TYPE_MISMATCH');
    } finally {
      await OpenFeature.clearProviders();
      await watcher.stop();
    }
  });

  it('refuses an unknown stage or read percentage and changes nothing', async () => {
    await assert.rejects(
      setStage(pools.old, migration, { stage: 'sideways' as never }),
      /unknown stage sideways/,
    );
    await assert.rejects(
      setStage(pools.old, migration, { stage: 'live', readPercent: 101 }),
      /readPercent is 101; it must be a whole number from 0 to 100/,
    );
    assert.equal((await readStage(pools.old, migration)).version, 2);
  });
});
