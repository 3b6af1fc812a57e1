// Reads a migration config file (YAML or JSON) and turns zod's findings into lines that name the field.
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import type { z } from 'zod';
import { OperatorError } from '../model/errors';
import { migrationSchema, siteSchema, type MigrationConfig, type SiteConfig } from './schema';

function describeIssues(file: string, error: z.ZodError): string {
  const lines = error.issues.map((issue) => {
    const field = issue.path.length > 0 ? issue.path.join('.') : '(top level)';
    return `  ${field}: ${issue.message}`;
  });
  return `${file} is not a valid migration config:\n${lines.join('\n')}`;
}

function readDocument(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new OperatorError(
      code === 'ENOENT'
        ? `config file ${file} does not exist`
        : `cannot read config file ${file} (${code ?? 'error'})`,
    );
  }
  try {
    return parseYaml(text) ?? {};
  } catch (err) {
    throw new OperatorError(`config file ${file} is not valid YAML or JSON: ${(err as Error).message}`);
  }
}

export function parseMigrationConfig(document: unknown, file = 'config'): MigrationConfig {
  const result = migrationSchema.safeParse(document);
  if (!result.success) throw new OperatorError(describeIssues(file, result.error));
  return result.data;
}

export function parseSiteConfig(document: unknown, file = 'config'): SiteConfig {
  // A full migration file is also a valid site file: only the site's fields are read.
  const site = siteSchema.keyof().options;
  const picked =
    document !== null && typeof document === 'object'
      ? Object.fromEntries(
          Object.entries(document).filter(([key]) => (site as readonly string[]).includes(key)),
        )
      : document;
  const result = siteSchema.safeParse(picked);
  if (!result.success) throw new OperatorError(describeIssues(file, result.error));
  return result.data;
}

export function loadMigrationConfig(file: string): MigrationConfig {
  return parseMigrationConfig(readDocument(file), file);
}

/** The site part of a config file, or the defaults (everything from the environment) without one. */
export function loadSiteConfig(file: string | undefined): SiteConfig {
  return file === undefined ? parseSiteConfig({}) : parseSiteConfig(readDocument(file), file);
}
