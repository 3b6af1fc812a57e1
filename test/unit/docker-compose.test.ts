// docker-compose.yml cannot run here (no Docker engine), so this checks its shape: the services,
// ports and variables the README promises, no deprecated auto-setup image, no password in the
// file, and the search attributes the workflows set.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { projectRoot } from '../../provision/project-paths';
import { SEARCH_ATTRIBUTES } from '../../workflows/search-attributes';

interface Service {
  image?: string;
  build?: unknown;
  ports?: string[];
  environment?: Record<string, string>;
  depends_on?: string[] | Record<string, unknown>;
  command?: string[];
}

const composeText = readFileSync(path.join(projectRoot, 'docker-compose.yml'), 'utf8');
const compose = parse(composeText) as { services: Record<string, Service> };
const readme = readFileSync(path.join(projectRoot, 'README.md'), 'utf8');
const services = compose.services;

describe('docker-compose.yml', () => {
  it('has Temporal with PostgreSQL persistence, schema setup, the UI, old, new and the worker', () => {
    for (const name of [
      'temporal-postgresql',
      'temporal-admin-tools',
      'temporal',
      'temporal-setup',
      'temporal-ui',
      'old-db',
      'new-db',
      'worker',
    ]) {
      assert.ok(services[name], `service ${name}`);
    }
    assert.match(services.temporal?.image ?? '', /^temporalio\/server:/);
    assert.match(services['temporal-admin-tools']?.image ?? '', /^temporalio\/admin-tools:/);
    assert.match(services['temporal-ui']?.image ?? '', /^temporalio\/ui:/);
    assert.match(services['new-db']?.image ?? '', /^citusdata\/citus:/);
    assert.ok(services.worker?.build !== undefined, 'the worker is built from this repository');
    assert.doesNotMatch(composeText, /auto-setup/);
    assert.equal(services.temporal?.environment?.DB, 'postgres12');
  });

  it('only depends on services it defines', () => {
    for (const [name, service] of Object.entries(services)) {
      const deps = Array.isArray(service.depends_on)
        ? service.depends_on
        : Object.keys(service.depends_on ?? {});
      for (const dep of deps) assert.ok(services[dep], `${name} depends on missing service ${dep}`);
    }
  });

  it('publishes the ports the README names', () => {
    const published = Object.values(services).flatMap((service) => service.ports ?? []);
    for (const port of ['7233:7233', '8233:8080', '5433:5432', '5434:5432']) {
      assert.ok(published.includes(port), `port ${port} published`);
      assert.ok(
        readme.includes(`localhost:${port.split(':')[0]}`),
        `README mentions localhost:${port.split(':')[0]}`,
      );
    }
  });

  it('gives the worker the variables the README documents, with passwords from the environment', () => {
    const env = services.worker?.environment ?? {};
    for (const name of ['TEMPORAL_ADDRESS', 'OLD_DATABASE_URL', 'NEW_DATABASE_URL']) {
      assert.ok(env[name], `worker sets ${name}`);
      assert.ok(readme.includes(name), `README documents ${name}`);
    }
    for (const secret of ['OLD_DB_PASSWORD', 'NEW_DB_PASSWORD', 'TEMPORAL_DB_PASSWORD']) {
      assert.match(
        composeText,
        new RegExp(`\\$\\{${secret}:\\?`),
        `${secret} is required from the environment`,
      );
      assert.ok(readme.includes(secret), `README documents ${secret}`);
    }
    assert.doesNotMatch(composeText, /PASSWORD:\s+[^$\s]/, 'no literal password in the file');
  });

  it('registers every search attribute the workflows set', () => {
    const setup = (services['temporal-setup']?.command ?? []).join('\n');
    for (const key of SEARCH_ATTRIBUTES) {
      const type = key.type === 'INT' ? 'Int' : 'Keyword';
      assert.match(setup, new RegExp(`--name ${key.name} --type ${type}`));
    }
  });
});
