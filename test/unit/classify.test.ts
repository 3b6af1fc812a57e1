// The router's read/write classification: a statement goes to the read side only when it provably
// reads. Keywords inside comments, literals and quoted identifiers do not count.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { classifyStatement, type StatementKind } from '../../db/classify';

const CASES: Array<[StatementKind, string]> = [
  ['read', 'SELECT 1'],
  ['read', 'select * from users where id = $1'],
  ['read', '  (SELECT id FROM users) UNION (SELECT id FROM admins)'],
  ['read', 'SELECT count(*), max(created_at) FROM orders WHERE status = ANY($1)'],
  ['read', "SELECT lower(name), jsonb_build_object('a', 1) FROM users"],
  ['read', 'SELECT * FROM generate_series(1, 10) AS g'],
  [
    'read',
    "WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '1 day') SELECT * FROM recent",
  ],
  [
    'read',
    'WITH RECURSIVE t(n) AS (VALUES (1) UNION ALL SELECT n + 1 FROM t WHERE n < 5) SELECT sum(n) FROM t',
  ],
  ['read', 'VALUES (1, 2), (3, 4)'],
  ['read', 'SELECT lower(name) AS n FROM unnest($1::text[]) AS u(name)'],
  ['read', 'WITH t(a) AS MATERIALIZED (SELECT 1) SELECT a FROM t'],
  ['write', 'SELECT audit(x) AS a FROM t'],
  ['read', 'TABLE users'],
  ['read', 'SHOW search_path'],
  ['read', 'EXPLAIN DELETE FROM users'],
  ['read', 'EXPLAIN (ANALYZE, BUFFERS) SELECT * FROM users'],
  ['read', "SELECT 'DELETE FROM users; DROP TABLE x' AS text"],
  ['read', 'SELECT 1 -- ; DELETE FROM users'],
  ['read', 'SELECT 1 /* UPDATE users SET x = 1 /* nested */ still comment */'],
  ['read', 'SELECT "update", "for update" FROM "delete"'],
  ['read', 'SELECT $body$ INSERT INTO t VALUES (1) $body$'],
  ['read', "SELECT E'it\\'s FOR UPDATE' FROM t"],
  ['read', 'SELECT substring(name FROM 1 FOR 3) FROM users'],
  ['read', 'SELECT count(*) FILTER (WHERE active) OVER (PARTITION BY team) FROM users'],
  ['read', 'SELECT amount::numeric(10, 2) FROM orders ORDER BY id LIMIT 10 OFFSET $2'],
  ['read', "SELECT currval('orders_id_seq')"],
  ['write', 'INSERT INTO users (name) VALUES ($1) RETURNING id'],
  ['write', 'UPDATE users SET name = $1 WHERE id = $2'],
  ['write', 'DELETE FROM users WHERE id = $1'],
  ['write', 'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v'],
  [
    'write',
    'WITH moved AS (DELETE FROM queue WHERE id = $1 RETURNING *) INSERT INTO done SELECT * FROM moved',
  ],
  ['write', 'WITH ins AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM ins'],
  ['write', 'SELECT * FROM jobs WHERE state = $1 FOR UPDATE SKIP LOCKED'],
  ['write', 'SELECT * FROM accounts WHERE id = 1 FOR NO KEY UPDATE'],
  ['write', 'SELECT * FROM accounts FOR SHARE'],
  ['write', 'SELECT * FROM accounts FOR KEY SHARE OF accounts'],
  ['write', "SELECT nextval('orders_id_seq')"],
  ['write', "SELECT setval('orders_id_seq', 100)"],
  ['write', 'SELECT pg_advisory_lock(42)'],
  ['write', 'SELECT my_schema.refresh_totals()'],
  ['write', 'SELECT archive_old_orders($1)'],
  ['write', 'SELECT * INTO backup FROM users'],
  ['write', 'EXPLAIN ANALYZE DELETE FROM users'],
  ['write', 'EXPLAIN (ANALYZE) UPDATE users SET x = 1'],
  ['write', 'SELECT 1; UPDATE users SET x = 1'],
  ['write', 'CREATE TABLE t (id int)'],
  ['write', 'ALTER TABLE t ADD COLUMN v text'],
  ['write', 'DROP TABLE t'],
  ['write', 'TRUNCATE t'],
  ['write', 'BEGIN'],
  ['write', 'COMMIT'],
  ['write', "SET search_path = 'x'"],
  ['write', 'LOCK TABLE t IN ACCESS EXCLUSIVE MODE'],
  ['write', 'CALL do_things()'],
  ['write', 'DO $$ BEGIN PERFORM 1; END $$'],
  ['write', 'COPY t FROM STDIN'],
  ['write', 'REFRESH MATERIALIZED VIEW totals'],
  ['write', 'VACUUM t'],
  ['write', ''],
  ['write', '-- only a comment'],
];

describe('read/write classification', () => {
  it(`classifies ${CASES.length} statements, tricky ones included`, () => {
    const wrong = CASES.filter(([kind, sql]) => classifyStatement(sql).kind !== kind).map(
      ([kind, sql]) => `${kind} expected for: ${sql} (got ${JSON.stringify(classifyStatement(sql))})`,
    );
    assert.deepEqual(wrong, []);
  });

  it('says why a statement is a write', () => {
    assert.match(classifyStatement('SELECT * FROM t FOR UPDATE').reason, /locks rows \(FOR UPDATE\)/);
    assert.match(classifyStatement("SELECT nextval('s')").reason, /calls nextval\(\)/);
    assert.match(classifyStatement('WITH x AS (DELETE FROM t RETURNING 1) SELECT 1').reason, /DELETE/);
  });
});
