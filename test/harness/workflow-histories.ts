// Saved workflow histories for replay tests: where they live and how to read them. Each folder of
// test/histories holds the histories of one released shape of the workflows (recorded by
// `npm run histories:record`, named for the day); none is ever re-recorded or removed, so a change
// that would break a migration started under an earlier release fails the replay test: such a change
// goes behind `patched()`.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { HistoryAndWorkflowId } from '@temporalio/client';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { projectRoot } from '../../provision/project-paths';

export const historiesDir = path.join(projectRoot, 'test', 'histories');
export const workflowsPath = require.resolve('../../workflows');

/**
 * File names are the workflow id with "/" written as "~", then "~run-N" (record-histories.ts): the
 * replay must see the real id, since workflows derive their children's ids from it.
 */
export function historyFileName(workflowId: string, run: number): string {
  return `${workflowId.replace(/\//g, '~')}~run-${run}.json`;
}

function workflowIdOf(file: string): string {
  return path
    .basename(file, '.json')
    .replace(/~run-\d+$/, '')
    .replace(/~/g, '/');
}

/** Every saved history of every released shape, with the shape (its folder) it was recorded under. */
export function savedHistories(): Array<HistoryAndWorkflowId & { release: string }> {
  return readdirSync(historiesDir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .map((entry) => entry.name)
    .sort()
    .flatMap((release) =>
      readdirSync(path.join(historiesDir, release))
        .filter((file) => file.endsWith('.json'))
        .sort()
        .map((file) => ({
          release,
          workflowId: workflowIdOf(file),
          history: historyFromJSON(JSON.parse(readFileSync(path.join(historiesDir, release, file), 'utf8'))),
        })),
    );
}
