// For config tests: the one-line error a migration config is refused with.
import assert from 'node:assert/strict';
import { OperatorError } from '../../model/errors';
import { parseMigrationConfig } from '../../config/load';

export function configRejection(document: unknown): string {
  try {
    parseMigrationConfig(document, 'migration.yaml');
  } catch (err) {
    assert.ok(err instanceof OperatorError);
    return err.message;
  }
  assert.fail('the config was accepted');
}
