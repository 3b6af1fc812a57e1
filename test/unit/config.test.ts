// Config validation: defaults, and errors that name the field and what is wrong.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { backfillInputFor } from '../../config/backfill-input';
import { resolveConnection } from '../../config/connections';
import { loadMigrationConfig, parseMigrationConfig, parseSiteConfig } from '../../config/load';
import { qualifiedTableName } from '../../config/schema';
import { configRejection } from '../harness/config';

describe('migration config', () => {
  it('fills in defaults: chunk size 1000, connections from OLD_/NEW_DATABASE_URL', () => {
    const config = parseMigrationConfig({ name: 'orders-move', tables: ['orders'] });
    assert.equal(config.chunkSize, 1000);
    assert.equal(config.partitions, 4);
    assert.equal(config.chunksInFlight, 2);
    assert.equal(config.chunksPerActivity, 32);
    assert.deepEqual(config.throttle, {
      maxRowsPerSecond: null,
      maxProbeLatencyMs: 50,
      maxActiveConnections: 64,
      maxReplicaLagSeconds: 10,
      checkIntervalMs: 1000,
      backoffMs: 2000,
      latencyTarget: {
        ratio: 2,
        floorMs: 2,
        intervalMs: 5000,
        minRowsPerSecond: 200,
        probeQuery: 'SELECT 1',
        minSamples: 20,
        startRowsPerSecond: 2000,
        slowStartMinRows: 100_000,
      },
      niceRatio: 0,
    });
    assert.deepEqual(config.old, { urlEnv: 'OLD_DATABASE_URL' });
    assert.deepEqual(config.new, { urlEnv: 'NEW_DATABASE_URL' });
    assert.equal(config.temporal.taskQueue, 'pg-live-migrate');
    assert.deepEqual(qualifiedTableName('orders'), { schema: 'public', table: 'orders' });
    assert.deepEqual(qualifiedTableName({ name: 'sales.Orders' }), { schema: 'sales', table: 'Orders' });
  });

  it('takes the latency brake off with null, and refuses a probe that is not one SELECT', () => {
    const off = parseMigrationConfig({ name: 'm', tables: ['t'], throttle: { latencyTarget: null } });
    assert.equal(off.throttle.latencyTarget, null);
    const set = parseMigrationConfig({
      name: 'm',
      tables: ['t'],
      throttle: { latencyTarget: { ratio: 1.5 } },
    });
    assert.equal(set.throttle.latencyTarget?.ratio, 1.5);
    assert.equal(set.throttle.latencyTarget?.intervalMs, 5000);
    for (const probeQuery of [
      'DELETE FROM t',
      'SELECT 1; DROP TABLE t',
      'WITH d AS (DELETE FROM t) SELECT 1',
    ]) {
      assert.throws(
        () => parseMigrationConfig({ name: 'm', tables: ['t'], throttle: { latencyTarget: { probeQuery } } }),
        /throttle\.latencyTarget\.probeQuery.*must be one SELECT statement/,
      );
    }
    const fullSpeed = parseMigrationConfig({
      name: 'm',
      tables: ['t'],
      throttle: { latencyTarget: { startRowsPerSecond: null } },
    });
    assert.equal(fullSpeed.throttle.latencyTarget?.startRowsPerSecond, null, 'slow start off');
    assert.throws(
      () =>
        parseMigrationConfig({
          name: 'm',
          tables: ['t'],
          throttle: { latencyTarget: { startRowsPerSecond: 0 } },
        }),
      /throttle\.latencyTarget\.startRowsPerSecond.*must be above 0 \(or null: every copy starts at full speed\)/,
    );
    assert.throws(
      () => parseMigrationConfig({ name: 'm', tables: ['t'], throttle: { latencyTarget: { ratio: 1 } } }),
      /throttle\.latencyTarget\.ratio.*must be at least 1\.1/,
    );
  });

  it('names the field and the problem for bad values', () => {
    assert.match(configRejection({ name: 'x', tables: ['orders'], chunkSize: 0 }), /chunkSize: .*>=\s*1/);
    assert.match(
      configRejection({ name: 'x', tables: ['orders'], chunkSize: 2.5 }),
      /chunkSize: must be a whole number/,
    );
    assert.match(configRejection({ name: 'x', tables: [] }), /tables: must list at least one table/);
    assert.match(configRejection({ name: 'Bad Name!', tables: ['t'] }), /name: must be 1-63 lowercase/);
    assert.match(configRejection({ name: 'x', tables: ['a.b.c'] }), /tables\.0: must be a table name/);
    assert.match(configRejection({ name: 'x', tables: ['t'], concurency: 3 }), /concurency|Unrecognized key/);
    assert.match(configRejection({ tables: ['t'] }), /name: /);
    assert.match(configRejection({ name: 'x', tables: ['t'], partitions: 0 }), /partitions: .*>=\s*1/);
    assert.match(
      configRejection({ name: 'x', tables: ['t'], chunksInFlight: 1.5 }),
      /chunksInFlight: must be a whole number/,
    );
    assert.match(
      configRejection({ name: 'x', tables: ['t'], throttle: { maxRowsPerSecond: -5 } }),
      /throttle\.maxRowsPerSecond: must be above 0 \(or null for no limit\)/,
    );
    assert.match(
      configRejection({ name: 'x', tables: ['t'], throttle: { maxLag: 3 } }),
      /throttle: .*maxLag/,
    );
    assert.match(
      configRejection({ name: 'x', tables: [{ name: 't', hotRowsWhere: '  ' }] }),
      /tables\.0\.hotRowsWhere: must be a SQL condition on the table/,
    );
  });

  it('turns a table of the config into its backfill input: names and numbers, no secrets', () => {
    const config = parseMigrationConfig({
      name: 'orders-move',
      tables: [{ name: 'sales.orders', hotRowsWhere: "status = 'open'" }],
      old: { url: 'postgres://app@db:5432/app', passwordEnv: 'OLD_DB_PASSWORD' },
      throttle: { maxRowsPerSecond: 5000, maxProbeLatencyMs: null },
      partitions: 8,
    });
    const input = backfillInputFor(config, config.tables[0] ?? 'missing');
    assert.deepEqual(
      { ...input, throttle: undefined },
      {
        migration: 'orders-move',
        source: 'old',
        target: 'new',
        table: { schema: 'sales', table: 'orders' },
        chunkSize: 1000,
        createTargetTable: false,
        partitions: 8,
        chunksInFlight: 2,
        chunksPerActivity: 32,
        hotRowsWhere: "status = 'open'",
        throttle: undefined,
      },
    );
    assert.equal(input.throttle?.maxRowsPerSecond, 5000);
    assert.equal(input.throttle?.maxProbeLatencyMs, null);
    assert.doesNotMatch(JSON.stringify(input), /postgres:|PASSWORD/);
  });

  it('carries a Citus distribution column to the backfill input, and refuses one that is not a column name', () => {
    const config = parseMigrationConfig({
      name: 'citus',
      tables: [{ name: 'public.orders', distributionColumn: 'customer_id' }, 'public.customers'],
    });
    assert.equal(backfillInputFor(config, config.tables[0]!).distributionColumn, 'customer_id');
    assert.equal('distributionColumn' in backfillInputFor(config, config.tables[1]!), false);
    assert.match(
      configRejection({ name: 'citus', tables: [{ name: 'orders', distributionColumn: 'customer id' }] }),
      /tables\.0\.distributionColumn: must be a column name such as customer_id/,
    );
  });

  it('refuses a password written into the config file, without repeating it', () => {
    const message = configRejection({
      name: 'x',
      tables: ['t'],
      old: { url: 'postgres://app:hunter2@db:5432/app' },
    });
    assert.match(message, /old\.url: contains a password; .*urlEnv/);
    assert.doesNotMatch(message, /hunter2/);
  });

  it('asks for exactly one of url and urlEnv', () => {
    assert.match(
      configRejection({ name: 'x', tables: ['t'], new: {} }),
      /new: set exactly one of urlEnv \(recommended\) or url/,
    );
  });

  it('reads YAML files and says when the file is missing or broken', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'config-test-'));
    const good = path.join(dir, 'good.yaml');
    writeFileSync(good, 'name: orders-move\ntables: [public.orders]\nchunkSize: 500\n');
    assert.equal(loadMigrationConfig(good).chunkSize, 500);
    const broken = path.join(dir, 'broken.yaml');
    writeFileSync(broken, 'name: [unclosed\n');
    assert.throws(() => loadMigrationConfig(broken), /is not valid YAML or JSON/);
    assert.throws(() => loadMigrationConfig(path.join(dir, 'missing.yaml')), /missing\.yaml does not exist/);
  });

  it('resolves a connection from the environment and hides its password in the display form', () => {
    const site = parseSiteConfig({});
    const resolved = resolveConnection('old', site.old, {
      OLD_DATABASE_URL: 'postgres://app:s3cret@db:5432/app',
    });
    assert.equal(resolved.connectionString, 'postgres://app:s3cret@db:5432/app');
    assert.equal(resolved.display, 'postgres://app@db:5432/app');
    assert.equal(resolved.source, 'OLD_DATABASE_URL');
    assert.throws(() => resolveConnection('new', site.new, {}), /set NEW_DATABASE_URL/);
  });

  it('adds a password from passwordEnv to a URL that has none', () => {
    const resolved = resolveConnection(
      'new',
      { url: 'postgres://app@db/app', passwordEnv: 'NEW_PW' },
      { NEW_PW: 'p@ss' },
    );
    assert.equal(new URL(resolved.connectionString).password, 'p%40ss');
    assert.equal(resolved.display, 'postgres://app@db/app');
  });
});
