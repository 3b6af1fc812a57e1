// Sequences and identity columns (hazard 9): before new takes writes, every sequence that feeds a
// migrated table's columns on new is moved past what old has handed out (its last value, and the
// largest value in the column, for rows inserted with explicit ids), plus a margin for values old
// handed out to transactions that had not committed yet. A sequence is only ever moved forward, so
// running this again changes nothing, and a new that is already ahead stays where it is.
import type { ConnectionName } from '../model/connections';
import { refuse } from '../model/errors';
import type { TableRef } from '../model/tables';
import type { NamedPools } from '../db/pools';
import type { ServerBinding } from '../model/servers';
import { quoteIdent, quoteTable } from '../db/sql';

export interface AdvanceSequencesInput {
  servers: ServerBinding;
  /** Where values were handed out so far (the side that was authoritative). */
  from: ConnectionName;
  /** The side about to take writes. */
  to: ConnectionName;
  tables: TableRef[];
  /** Added on top of the largest value seen (default 1000). */
  margin?: number;
}

export interface AdvancedSequence {
  table: string;
  column: string;
  /** The sequence on the side about to take writes. */
  sequence: string;
  /** The largest value the other side had handed out or stored. */
  highestSeen: string;
  before: string;
  after: string;
  moved: boolean;
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

export function createSequences(pools: NamedPools) {
  return {
    advanceSequences: async (input: AdvanceSequencesInput): Promise<AdvancedSequence[]> => {
      const margin = BigInt(input.margin ?? 1000);
      const from = pools.get(input.from);
      const to = pools.get(input.to);
      const advanced: AdvancedSequence[] = [];
      for (const table of input.tables) {
        const name = quoteTable(table);
        const [onFrom, onTo] = await Promise.all(
          [from, to].map(async (pool) => (await pool.query<OwnedSequence>(OWNED_SEQUENCES, [name])).rows),
        );
        for (const target of onTo!) {
          if (BigInt(target.increment) < 0n) {
            throw refuse(
              `${name}.${target.column} takes values from a descending sequence (${target.sequence}); moving it past old's values is not supported`,
            );
          }
          const source = onFrom!.find((candidate) => candidate.column === target.column);
          const column = quoteIdent(target.column);
          // What old handed out: its sequence (when it has one for this column) and the column itself.
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
          // The margin covers values old handed out to transactions not yet committed; new's own
          // rows only need the sequence not to go below them.
          const seenWithMargin = highestSeen + margin;
          const wanted = seenWithMargin > stored ? seenWithMargin : stored;
          let after = before;
          if (wanted > before) {
            // setval never moves backwards here: the comparison happens in the same statement.
            const set = await to.query<{ after: string }>(
              `SELECT greatest(setval($1::regclass, greatest($2::bigint, (SELECT last_value FROM ${target.sequence})), true), 0)::text AS after`,
              [target.sequence, wanted.toString()],
            );
            after = BigInt(set.rows[0]?.after ?? wanted.toString());
          }
          advanced.push({
            table: `${table.schema}.${table.table}`,
            column: target.column,
            sequence: target.sequence,
            highestSeen: highestSeen.toString(),
            before: before.toString(),
            after: after.toString(),
            moved: after !== before,
          });
        }
      }
      return advanced;
    },
  };
}
