// Sequences and identity columns (hazard 9), read only: for each sequence that feeds a table's
// columns on the side about to take writes, how far it must move to pass what the other side handed
// out (its sequence's last value, and the largest value stored in the column, for rows inserted with
// explicit ids) plus a margin for values handed to transactions that had not committed yet. The
// write switch moves them (activities/sequences.ts); `migrate switch --dry-run` shows them.
import type pg from 'pg';
import type { TableRef } from '../model/tables';
import { quoteIdent, quoteTable } from './sql';

export interface SequenceMove {
  table: string;
  column: string;
  /** The sequence on the side about to take writes. */
  sequence: string;
  /** A descending sequence: moving it past the other side's values is not supported. */
  descending: boolean;
  /** The largest value the other side had handed out or stored. */
  highestSeen: string;
  /** The value the sequence last handed out (or would, before its first call). */
  before: string;
  /** Where it must be: past highestSeen plus the margin, and never below its own column's rows. */
  wanted: string;
  /** False when the sequence is already at or past `wanted` (a sequence is never moved back). */
  moves: boolean;
}

interface OwnedSequence {
  column: string;
  sequence: string;
  increment: string;
}

const OWNED_SEQUENCES = `
  SELECT a.attname AS column, s.oid::regclass::text AS sequence, seq.seqincrement::text AS increment
    FROM pg_depend d
    JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
    JOIN pg_sequence seq ON seq.seqrelid = s.oid
    JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
   WHERE d.refobjid = $1::regclass AND d.deptype IN ('a', 'i')
   ORDER BY a.attnum`;

/** What moving `to`'s sequences past `from`'s values would do, table by table; changes nothing. */
export async function planSequenceMoves(
  from: pg.Pool,
  to: pg.Pool,
  tables: TableRef[],
  margin = 1000n,
): Promise<SequenceMove[]> {
  const moves: SequenceMove[] = [];
  for (const table of tables) {
    const name = quoteTable(table);
    const [onFrom, onTo] = await Promise.all(
      [from, to].map(async (pool) => (await pool.query<OwnedSequence>(OWNED_SEQUENCES, [name])).rows),
    );
    for (const target of onTo!) {
      const entry = {
        table: `${table.schema}.${table.table}`,
        column: target.column,
        sequence: target.sequence,
      };
      if (BigInt(target.increment) < 0n) {
        moves.push({ ...entry, descending: true, highestSeen: '', before: '', wanted: '', moves: false });
        continue;
      }
      const source = onFrom!.find((candidate) => candidate.column === target.column);
      const column = quoteIdent(target.column);
      // What the other side handed out: its sequence (when it has one for this column) and the column.
      const seen = await from.query<{ highest: string | null }>(
        `SELECT greatest(
                  (SELECT max(${column})::bigint FROM ${name}),
                  ${source === undefined ? 'NULL' : `(SELECT CASE WHEN is_called THEN last_value END FROM ${source.sequence})`}
                )::text AS highest`,
      );
      const current = await to.query<{ value: string; stored: string | null }>(
        `SELECT (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM ${target.sequence})::text AS value,
                (SELECT max(${column})::bigint FROM ${name})::text AS stored`,
      );
      const highestSeen = BigInt(seen.rows[0]?.highest ?? '0');
      const before = BigInt(current.rows[0]?.value ?? '0');
      const stored = BigInt(current.rows[0]?.stored ?? '0');
      // The margin covers values handed out to transactions not yet committed; the side's own rows
      // only need the sequence not to go below them.
      const seenWithMargin = highestSeen + margin;
      const wanted = seenWithMargin > stored ? seenWithMargin : stored;
      moves.push({
        ...entry,
        descending: false,
        highestSeen: highestSeen.toString(),
        before: before.toString(),
        wanted: wanted.toString(),
        moves: wanted > before,
      });
    }
  }
  return moves;
}
