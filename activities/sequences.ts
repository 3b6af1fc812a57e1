// Sequences and identity columns (hazard 9): before new takes writes, every sequence that feeds a
// migrated table's columns on new is moved past what old has handed out (its last value, and the
// largest value in the column, for rows inserted with explicit ids), plus a margin for values old
// handed out to transactions that had not committed yet (db/sequence-plan.ts reads how far). A
// sequence is only ever moved forward, so running this again changes nothing, and a new that is
// already ahead stays where it is.
import type { ConnectionName } from '../model/connections';
import { refuse } from '../model/errors';
import type { TableRef } from '../model/tables';
import type { NamedPools } from '../db/pools';
import type { ServerBinding } from '../model/servers';
import { planSequenceMoves } from '../db/sequence-plan';

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

export function createSequences(pools: NamedPools) {
  return {
    advanceSequences: async (input: AdvanceSequencesInput): Promise<AdvancedSequence[]> => {
      const to = pools.get(input.to);
      const planned = await planSequenceMoves(
        pools.get(input.from),
        to,
        input.tables,
        BigInt(input.margin ?? 1000),
      );
      const descending = planned.find((move) => move.descending);
      if (descending !== undefined) {
        throw refuse(
          `${descending.table}.${descending.column} takes values from a descending sequence (${descending.sequence}); moving it past old's values is not supported`,
        );
      }
      const advanced: AdvancedSequence[] = [];
      for (const move of planned) {
        let after = move.before;
        if (move.moves) {
          // setval never moves backwards here: the comparison happens in the same statement.
          const set = await to.query<{ after: string }>(
            `SELECT greatest(setval($1::regclass, greatest($2::bigint, (SELECT last_value FROM ${move.sequence})), true), 0)::text AS after`,
            [move.sequence, move.wanted],
          );
          after = set.rows[0]?.after ?? move.wanted;
        }
        const { table, column, sequence, highestSeen, before } = move;
        advanced.push({ table, column, sequence, highestSeen, before, after, moved: after !== before });
      }
      return advanced;
    },
  };
}
