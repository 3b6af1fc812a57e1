// Saved workflow histories for replay tests: where they live and how to read them.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { HistoryAndWorkflowId } from '@temporalio/client';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { projectRoot } from '../../provision/project-paths';

export const historiesDir = path.join(projectRoot, 'test', 'histories');
export const workflowsPath = require.resolve('../../workflows');

export function savedHistories(): HistoryAndWorkflowId[] {
  return readdirSync(historiesDir)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => ({
      workflowId: path.basename(file, '.json'),
      history: historyFromJSON(JSON.parse(readFileSync(path.join(historiesDir, file), 'utf8'))),
    }));
}
