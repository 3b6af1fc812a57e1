// docker-compose.yml cannot run here (no Docker engine), so this checks its shape: the services,
// ports and variables the README promises, no deprecated auto-setup image, no password in the
// file, and the search attributes the workflows set; a health check on every server and the order
// they start in; no failure hidden by `|| true`; the Citus coordinator with its worker nodes
// registered; Prometheus scraping the worker's metrics port and Grafana with its provisioning files.
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
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
  depends_on?: string[] | Record<string, { condition?: string }>;
  entrypoint?: string[];
  command?: string[];
  healthcheck?: { test?: string[] };
  volumes?: string[];
}

const composeText = readFileSync(path.join(projectRoot, 'docker-compose.yml'), 'utf8');
// merge: the Citus nodes share their settings through a YAML merge key.
const compose = parse(composeText, { merge: true }) as { services: Record<string, Service> };
/** Services that run once and exit (schema and cluster setup); every other one is a server. */
const ONE_SHOT = new Set(['temporal-admin-tools', 'temporal-setup', 'citus-setup']);
const script = (service: Service | undefined) =>
  [...(service?.entrypoint ?? []), ...(service?.command ?? [])].join('\n');
/** host path -> container path of a service's bind mounts (./...). */
const mounts = (service: Service | undefined) =>
  new Map(
    (service?.volumes ?? [])
      .filter((volume) => volume.startsWith('./'))
      .map((volume) => {
        const [host, container] = volume.split(':');
        return [host!, container!] as const;
      }),
  );
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
    for (const port of [
      '7233:7233',
      '8233:8080',
      '5433:5432',
      '5434:5432',
      '9464:9464',
      '9090:9090',
      '3000:3000',
    ]) {
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
    for (const secret of [
      'OLD_DB_PASSWORD',
      'NEW_DB_PASSWORD',
      'TEMPORAL_DB_PASSWORD',
      'GRAFANA_ADMIN_PASSWORD',
    ]) {
      assert.match(
        composeText,
        new RegExp(`\\$\\{${secret}:\\?`),
        `${secret} is required from the environment`,
      );
      assert.ok(readme.includes(secret), `README documents ${secret}`);
    }
    assert.doesNotMatch(composeText, /PASSWORD:\s+[^$\s]/, 'no literal password in the file');
  });

  it('registers every search attribute the workflows set, each on its own', () => {
    const setup = script(services['temporal-setup']);
    assert.match(
      setup,
      /register\(\) \{ once temporal operator search-attribute create --namespace default --name "\$\$1" --type "\$\$2"; \}/,
    );
    for (const key of SEARCH_ATTRIBUTES) {
      const type = key.type === 'INT' ? 'Int' : 'Keyword';
      assert.match(setup, new RegExp(`^\\s*register ${key.name} ${type}$`, 'm'));
    }
  });

  it('hides no failure: no `|| true`, and setup ignores only "already exists"', () => {
    assert.doesNotMatch(composeText, /\|\|\s*(true|:)\b/);
    assert.doesNotMatch(composeText, /2>\s*\/dev\/null/);
    for (const name of ONE_SHOT) {
      const setup = script(services[name]);
      assert.match(setup, /^\/bin\/sh\n-ec\n/, `${name} runs its shell with -e`);
    }
    const once = script(services['temporal-setup']);
    assert.match(once, /\*"already exists"\*\|\*"AlreadyExists"\*\) echo "already done: \$\$\*" ;;/);
    assert.match(once, /\*\) echo "\$\$out" >&2; return 1 ;;/, 'any other failure fails the setup');
    assert.match(
      script(services['temporal-admin-tools']),
      /once temporal-sql-tool --db \$\$db create-database/,
    );
    assert.match(script(services['citus-setup']), /psql -v ON_ERROR_STOP=1/);
  });

  it('checks the health of every server and starts each after what it needs', () => {
    for (const [name, service] of Object.entries(services)) {
      if (ONE_SHOT.has(name)) {
        assert.equal(service.ports, undefined, `${name} runs once and serves nothing`);
        continue;
      }
      assert.ok((service.healthcheck?.test ?? []).length > 0, `${name} has a health check`);
    }
    assert.deepEqual(services.temporal?.healthcheck?.test?.slice(1, 5), [
      'temporal',
      'operator',
      'cluster',
      'health',
    ]);
    for (const [name, service] of Object.entries(services)) {
      assert.ok(!Array.isArray(service.depends_on), `${name} says what it waits for (condition)`);
      for (const [dep, { condition }] of Object.entries(service.depends_on ?? {})) {
        const expected = ONE_SHOT.has(dep) ? 'service_completed_successfully' : 'service_healthy';
        // Prometheus scrapes whatever the worker serves: it only needs the worker started.
        if (name === 'prometheus' && dep === 'worker') assert.equal(condition, 'service_started');
        else assert.equal(condition, expected, `${name} waits for ${dep}: ${expected}`);
      }
    }
    assert.deepEqual(needs(services['temporal-setup']), ['temporal']);
    assert.ok(needs(services['temporal']).includes('temporal-admin-tools'));
    for (const dep of ['temporal-setup', 'old-db', 'citus-setup'])
      assert.ok(needs(services['worker']).includes(dep), `worker needs ${dep}`);
  });

  it('runs new as a Citus coordinator with worker nodes that the setup registers', () => {
    const nodes = Object.keys(services).filter((name) => /^citus-worker-\d+$/.test(name));
    assert.ok(nodes.length >= 1, 'at least one Citus worker node');
    const setup = script(services['citus-setup']);
    assert.match(setup, /citus_set_coordinator_host\('new-db', 5432\)/);
    for (const node of nodes) {
      assert.match(services[node]?.image ?? '', /^citusdata\/citus:/);
      assert.equal(services[node]?.image, services['new-db']?.image, `${node} runs the coordinator's Citus`);
      assert.equal(services[node]?.ports, undefined, `${node} is reached through the coordinator only`);
      assert.match(setup, new RegExp(`SELECT citus_add_node\\('${node}', 5432\\);`));
      assert.ok(needs(services['citus-setup']).includes(node), `citus-setup waits for ${node}`);
    }
    assert.match(services['citus-setup']?.environment?.PGPASSWORD ?? '', /^\$\{NEW_DB_PASSWORD:\?/);
  });

  it("has Prometheus scrape the worker's metrics port and Grafana show the provisioned dashboard", () => {
    const port = services.worker?.environment?.MIGRATE_METRICS_PORT;
    assert.ok(port, 'the worker serves metrics');
    assert.ok(services.worker?.ports?.includes(`${port}:${port}`));
    const prometheusMounts = mounts(services.prometheus);
    assert.equal(
      prometheusMounts.get('./deploy/prometheus/prometheus.yml'),
      '/etc/prometheus/prometheus.yml',
    );
    const prometheus = parse(
      readFileSync(path.join(projectRoot, 'deploy/prometheus/prometheus.yml'), 'utf8'),
    ) as {
      scrape_configs: Array<{ static_configs: Array<{ targets: string[] }> }>;
    };
    const targets = prometheus.scrape_configs.flatMap((job) => job.static_configs.flatMap((c) => c.targets));
    assert.ok(targets.includes(`worker:${port}`), `Prometheus scrapes worker:${port}`);

    const grafanaMounts = mounts(services.grafana);
    for (const [host, container] of grafanaMounts) {
      assert.ok(existsSync(path.join(projectRoot, host)), `${host} exists`);
      assert.ok(
        container.startsWith('/etc/grafana/provisioning/') || container === '/var/lib/grafana/dashboards',
      );
    }
    const provisioned = (folder: string) => {
      const host = [...grafanaMounts].find(
        ([, container]) => container === `/etc/grafana/provisioning/${folder}`,
      )?.[0];
      assert.ok(host, `provisioning/${folder} is mounted`);
      return readdirSync(path.join(projectRoot, host)).map(
        (file) => parse(readFileSync(path.join(projectRoot, host, file), 'utf8')) as Record<string, unknown>,
      );
    };
    const [datasources] = provisioned('datasources') as Array<{
      datasources: Array<{ uid: string; url: string; type: string }>;
    }>;
    const datasource = datasources!.datasources[0]!;
    assert.equal(datasource.type, 'prometheus');
    assert.equal(datasource.url, 'http://prometheus:9090');
    const [providers] = provisioned('dashboards') as Array<{
      providers: Array<{ options: { path: string } }>;
    }>;
    const dashboardsPath = providers!.providers[0]!.options.path;
    const dashboardsHost = [...grafanaMounts].find(([, container]) => container === dashboardsPath)?.[0];
    assert.ok(dashboardsHost, `the provider's path ${dashboardsPath} is mounted`);
    const dashboards = readdirSync(path.join(projectRoot, dashboardsHost)).filter((file) =>
      file.endsWith('.json'),
    );
    assert.ok(dashboards.length >= 1);
    const home = services.grafana?.environment?.GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH ?? '';
    assert.ok(
      dashboards.some((file) => `${dashboardsPath}/${file}` === home),
      'the home dashboard is a provisioned one',
    );
    for (const file of dashboards) {
      const text: string = readFileSync(path.join(projectRoot, dashboardsHost, file), 'utf8');
      const uids: Set<string | undefined> = new Set(
        [...text.matchAll(/"datasource":\s*\{\s*"type":\s*"prometheus",\s*"uid":\s*"([^"]+)"/g)].map(
          (m) => m[1],
        ),
      );
      assert.deepEqual([...uids], [datasource.uid], `${file} queries the provisioned datasource`);
    }
    assert.ok(needs(services.grafana).includes('prometheus'));
  });
});

function needs(service: Service | undefined): string[] {
  return Array.isArray(service?.depends_on) ? service.depends_on : Object.keys(service?.depends_on ?? {});
}
