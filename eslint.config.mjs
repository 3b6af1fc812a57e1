// Lint rules: the typescript-eslint recommended set, type-aware, over all project sources; and the
// floors the folders stand on, so that imports only ever run downward (see LAYERS below).
import { readFileSync } from 'node:fs';
import path from 'node:path';
import eslint from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * The project's floors, lowest first (layers.json): a folder imports from its own floor's folder and
 * the floors below, never from beside or above it. `model` (shared vocabulary) imports no package at
 * all; `db` (PostgreSQL plumbing) and `router` (installed in applications) no Temporal; `workflows`
 * takes from `activities` only types (its code is bundled apart and must stay deterministic) and
 * nothing from `db` or `router`.
 */
const LAYERS = JSON.parse(readFileSync(path.join(import.meta.dirname, 'layers.json'), 'utf8')).floors;

const relativeTo = (folders) => `^(\\.\\./)+(${folders.join('|')})(/|$)`;

function layerRules(folder) {
  const floor = LAYERS.findIndex((floorFolders) => floorFolders.includes(folder));
  const notBelow = LAYERS.slice(floor)
    .flat()
    .filter((other) => other !== folder);
  const patterns = [];
  if (notBelow.length > 0) {
    patterns.push({
      regex: relativeTo(notBelow),
      message: `${folder}/ stands below ${notBelow.join(', ')}: imports run downward only (eslint.config.mjs, LAYERS)`,
    });
  }
  if (folder === 'model') {
    patterns.push({ regex: '^[^.]', message: 'model/ is plain vocabulary: it imports no package' });
  }
  if (folder === 'db' || folder === 'router') {
    patterns.push({
      regex: '^@temporalio/',
      message: `${folder}/ loads no Temporal code (the router is installed in applications)`,
    });
  }
  if (folder === 'workflows') {
    patterns.push(
      {
        regex: relativeTo(['db', 'router']),
        message: 'workflows/ import the model and the activities’ types only',
      },
      {
        regex: relativeTo(['activities']),
        allowTypeImports: true,
        message: 'workflows/ import activities as types only (import type): workflow code is bundled apart',
      },
    );
  }
  return {
    files: [`${folder}/**/*.ts`],
    rules: { '@typescript-eslint/no-restricted-imports': ['error', { patterns }] },
  };
}

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', '.tools/', '.data/'] },
  eslint.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: {
        projectService: { allowDefaultProject: ['eslint.config.mjs'] },
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-floating-promises': [
        'error',
        // node:test's describe/it return promises that the runner itself awaits.
        {
          allowForKnownSafeCalls: [
            { from: 'package', name: ['describe', 'it', 'test'], package: 'node:test' },
          ],
        },
      ],
    },
  },
  ...LAYERS.flat().map(layerRules),
  {
    files: ['eslint.config.mjs'],
    ...tseslint.configs.disableTypeChecked,
  },
);
