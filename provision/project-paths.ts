// Where the project's local, git-ignored folders are: .tools/ for installed tools, .data/ for state.
import { existsSync } from 'node:fs';
import path from 'node:path';

/**
 * The nearest folder above with a package.json: the checkout, or the installed package
 * (node_modules/pg-live-migrate: no .data/ there, so its CLI finds no dev stack), never the
 * application around it.
 */
function findProjectRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (existsSync(path.join(dir, 'package.json'))) return dir;
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`cannot find the project root above ${start}`);
    dir = parent;
  }
}

export const projectRoot = findProjectRoot(__dirname);
export const toolsDir = path.join(projectRoot, '.tools');
export const dataDir = path.join(projectRoot, '.data');
