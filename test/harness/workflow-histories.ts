// Saved workflow histories for replay tests: where they live and how to read them.
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

export function savedHistories(): HistoryAndWorkflowId[] {
  return readdirSync(historiesDir)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => ({
      workflowId: workflowIdOf(file),
      history: historyFromJSON(JSON.parse(readFileSync(path.join(historiesDir, file), 'utf8'))),
    }));
}
