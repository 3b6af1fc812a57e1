// Passwords never reach a log line or an error: URL and keyword forms are scrubbed everywhere.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { displayUrl, redactSecrets } from '../../model/redact';
import { createLogger } from '../../db/logger';

describe('secret redaction', () => {
  it('scrubs URL passwords and password= pairs', () => {
    assert.equal(
      redactSecrets('connect postgres://app:s3cr3t@db:5432/x failed'),
      'connect postgres://app:***@db:5432/x failed',
    );
    assert.equal(redactSecrets("host=db password='a b' user=x"), 'host=db password=*** user=x');
    assert.equal(redactSecrets('password=hunter2 port=5432'), 'password=*** port=5432');
    assert.equal(displayUrl('postgresql://u:pw@h:1/d?sslmode=require'), 'postgresql://u@h:1/d');
  });

  it('keeps passwords out of every pino line: messages, fields, nested objects and errors', () => {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const logger = createLogger({ name: 'test', pretty: false, destination });
    logger.info('url is postgres://u:topsecret1@h/d');
    logger.info({ connection: { url: 'postgres://u:topsecret2@h/d', password: 'topsecret3' } }, 'nested');
    logger.error({ err: new Error('failed for postgres://u:topsecret4@h/d') }, 'error');
    logger.warn({ dsn: 'host=h password=topsecret5' }, 'keyword form');
    const output = lines.join('');
    assert.equal(lines.length, 4);
    assert.doesNotMatch(output, /topsecret/);
    assert.match(output, /postgres:\/\/u:\*\*\*@h\/d/);
  });
});
