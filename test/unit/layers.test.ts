// The project's floors (layers.json), checked over the whole import graph of its sources: every
// import between folders runs downward, no module imports itself back through others (no circle),
// the model imports no package, db/ and router/ load no Temporal, and workflows/ take from
// activities/ types only. Prints the folder drawing. (eslint.config.mjs says the same per file, as
// one writes; this proves it of the whole tree.)
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const FLOORS = (JSON.parse(readFileSync(path.join(ROOT, 'layers.json'), 'utf8')) as { floors: string[][] })
  .floors;
const FOLDERS = FLOORS.flat();

interface Import {
  /** The imported module, relative to the root without extension, or the package name. */
  target: string;
  relative: boolean;
  typeOnly: boolean;
}

const IMPORT = /^\s*(?:import|export)\s+(type\s+)?(?:([^'";]*?)\s+from\s+)?['"]([^'"]+)['"]/gm;

/** `import type {...}`, or `import { type A, type B }`: erased from the compiled code. */
function onlyTypes(statementType: string | undefined, clause: string | undefined): boolean {
  if (statementType !== undefined) return true;
  const named = /^\{([^}]*)\}$/.exec((clause ?? '').trim());
  return (
    named !== null &&
    named[1]!.split(',').every((part) => part.trim() === '' || part.trim().startsWith('type '))
  );
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((entry) => {
    const full = path.join(dir, entry);
    if (statSync(full).isDirectory()) return sources(full);
    return entry.endsWith('.ts') && !entry.endsWith('.d.ts') ? [full] : [];
  });
}

function importsOf(file: string): Import[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(IMPORT)].map((match) => {
    const spec = match[3]!;
    const typeOnly = onlyTypes(match[1], match[2]);
    if (!spec.startsWith('.')) return { target: spec, relative: false, typeOnly };
    let target = path.relative(ROOT, path.resolve(path.dirname(file), spec));
    try {
      if (statSync(path.join(ROOT, target)).isDirectory()) target = path.join(target, 'index');
    } catch {
      // a module file, not a folder
    }
    return { target, relative: true, typeOnly };
  });
}

const modules = new Map<string, Import[]>();
for (const folder of FOLDERS) {
  for (const file of sources(path.join(ROOT, folder))) {
    modules.set(path.relative(ROOT, file).replace(/\.ts$/, ''), importsOf(file));
  }
}
const folderOf = (module: string) => module.split(path.sep)[0]!;
const floorOf = (folder: string) => FLOORS.findIndex((floor) => floor.includes(folder));

describe('the floors', () => {
  it('every import between folders runs downward; the drawing', () => {
    const edges = new Map<string, number>();
    const upward: string[] = [];
    for (const [module, imports] of modules) {
      for (const imported of imports.filter((i) => i.relative)) {
        const from = folderOf(module);
        const to = folderOf(imported.target);
        if (from === to) continue;
        edges.set(`${from} → ${to}`, (edges.get(`${from} → ${to}`) ?? 0) + 1);
        if (floorOf(to) >= floorOf(from)) upward.push(`${module} → ${imported.target}`);
      }
    }
    console.log(
      `import drawing (floors: ${FLOORS.map((floor) => floor.join(' ')).join(' < ')}):\n${[...edges]
        .sort()
        .map(([edge, count]) => `  ${edge} (${count})`)
        .join('\n')}`,
    );
    assert.deepEqual(upward, [], 'imports that run up or sideways');
  });

  it('no module imports itself back through others', () => {
    const state = new Map<string, 'open' | 'done'>();
    const circles: string[] = [];
    const visit = (module: string, trail: string[]) => {
      if (state.get(module) === 'done') return;
      if (state.get(module) === 'open') {
        circles.push([...trail.slice(trail.indexOf(module)), module].join(' → '));
        return;
      }
      state.set(module, 'open');
      for (const imported of modules.get(module) ?? []) {
        if (imported.relative && modules.has(imported.target)) visit(imported.target, [...trail, module]);
      }
      state.set(module, 'done');
    };
    for (const module of modules.keys()) visit(module, []);
    assert.deepEqual(circles, []);
  });

  it('the model imports no package; db and the router load no Temporal; workflows take types from activities', () => {
    const wrong: string[] = [];
    for (const [module, imports] of modules) {
      const folder = folderOf(module);
      for (const imported of imports) {
        if (folder === 'model' && !imported.relative) wrong.push(`${module} → ${imported.target}`);
        if ((folder === 'db' || folder === 'router') && imported.target.startsWith('@temporalio/')) {
          wrong.push(`${module} → ${imported.target}`);
        }
        if (folder === 'workflows' && imported.relative) {
          const to = folderOf(imported.target);
          if (to === 'db' || to === 'router' || (to === 'activities' && !imported.typeOnly)) {
            wrong.push(`${module} → ${imported.target}`);
          }
        }
      }
    }
    assert.deepEqual(wrong, []);
    assert.ok(modules.size > 100, `${modules.size} modules read`);
  });
});
