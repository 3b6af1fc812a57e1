// Preparing a migration's tables, before any row moves: bind the migration to its servers, check
// every table on both sides and refuse what cannot be migrated faithfully (hazard 10), create a table
// missing on new when asked (with everything that makes it behave like old's: table-definition.ts),
// claim the tables on both sides (one table, one migration: table-registry.ts) and put the TRUNCATE
// guard on them. Later: complete the tables it created (indexes and foreign keys, after the
// backfill), and, after a schema change held the migration, compare both sides again and record the
// new definitions when they match.
import type { ConnectionName } from '../model/connections';
import { ensureHelperSchema } from '../db/helper-schema';
import { MigrationFault, refuse, REFUSAL } from '../model/errors';
import type { TableRef, TableShape } from '../model/tables';
import { readTableShape } from '../db/inspector';
import type { ConnectionPools } from '../db/pools';
import type { ServerBinding } from '../model/servers';
import type { ServerIdentities } from './server-identity';
import { quoteIdent, quoteTable } from '../db/sql';
import { distributeTable, distributionColumnOf, distributionColumnProblem, hasCitus } from '../db/citus';
import {
  compareDefinitions,
  completeTargetTable,
  createTargetTable,
  describeDefinitionDifferences,
  readTableDefinition,
  type DefinitionDifference,
  type TableDefinition,
} from '../db/table-definition';
import type { ClaimedTable, TableRegistry } from './table-registry';
import type { createGuards } from './write-guard';

export interface PrepareTableInput {
  table: TableRef;
  /** Create the table on new from old's definition when new does not have it (createTables). */
  createIfMissing: boolean;
  /** The hot-rows condition, checked here so a bad one is refused before anything is written. */
  hotRowsWhere?: string;
  /** A Citus target: the column the table is distributed by on new (db/citus.ts). */
  distributionColumn?: string;
}

export interface PrepareTablesInput {
  migration: string;
  servers: ServerBinding;
  tables: PrepareTableInput[];
}

export interface PreparedTables {
  tables: Array<{ table: TableRef; estimatedRows: number }>;
  /** Tables whose indexes and foreign keys the migration adds after the backfill (createTables). */
  created: TableRef[];
  /** Differences that do not stop the migration (an index on one side only, say). */
  warnings: string[];
}

interface Inspected {
  input: PrepareTableInput;
  oldShape: TableShape;
  oldDefinition: TableDefinition;
  newDefinition: TableDefinition | undefined;
}

function sameTable(a: TableRef, b: TableRef): boolean {
  return a.schema === b.schema && a.table === b.table;
}

export function createPreparation(
  pools: ConnectionPools,
  registry: TableRegistry,
  identities: ServerIdentities,
  guards: ReturnType<typeof createGuards>,
) {
  const side = (name: ConnectionName) => ({ name, display: pools.display(name) });

  /** Refuses, listing them, the differences that would break a sync or let the sides disagree. */
  function refuseDifferences(table: TableRef, differences: DefinitionDifference[], created: boolean): void {
    const refusals = differences.filter((difference) => difference.severity === 'refuse');
    if (refusals.length === 0) return;
    throw refuse(
      `${describeDefinitionDifferences(table, refusals)}. ${
        created
          ? 'The table the migration created on new does not match old (a type or extension that differs between the servers?): drop it on new and create it yourself'
          : "Make new's definition match old's, or drop the table on new and let the migration create it (createTables: true)"
      }`,
    );
  }

  async function checkRowPredicate(table: TableRef, predicate: string): Promise<void> {
    try {
      // Parameters force the extended protocol: one statement, so the predicate cannot end it.
      await pools
        .get('old')
        .query(`EXPLAIN SELECT 1 FROM ${quoteTable(table)} WHERE (${predicate}) LIMIT $1`, [1]);
    } catch (err) {
      throw refuse(
        `hotRowsWhere for ${quoteTable(table)} is not a valid condition on that table: ${(err as Error).message}`,
      );
    }
  }

  /** Both sides' definitions, compared; refuses a table that is gone or no longer matches. */
  async function definitionsNow(
    tables: TableRef[],
    completeLater: TableRef[],
  ): Promise<Array<{ old: ClaimedTable; new: ClaimedTable; warnings: DefinitionDifference[] }>> {
    const found = [];
    for (const table of tables) {
      const [oldDefinition, newDefinition] = await Promise.all([
        readTableDefinition(pools.get('old'), table),
        readTableDefinition(pools.get('new'), table),
      ]);
      for (const [name, definition] of [
        ['old', oldDefinition],
        ['new', newDefinition],
      ] as const) {
        if (definition === undefined) {
          throw refuse(
            `table ${quoteTable(table)} does not exist on the ${name} database (${pools.display(name)})`,
          );
        }
      }
      const later = completeLater.some((other) => sameTable(other, table));
      const differences = compareDefinitions(oldDefinition!, newDefinition!, {
        migrated: tables,
        foreignKeysLater: later,
        indexesLater: later,
      });
      refuseDifferences(table, differences, false);
      found.push({
        old: {
          shape: await readTableShape(pools.get('old'), table, side('old')),
          definition: oldDefinition!,
        },
        new: {
          shape: await readTableShape(pools.get('new'), table, side('new')),
          definition: newDefinition!,
        },
        warnings: differences,
      });
    }
    return found;
  }

  /**
   * A table to distribute on a Citus target: the column must be able to distribute it, new must have
   * Citus, and a table new already has must be distributed by that column.
   */
  async function checkDistribution(
    table: TableRef,
    column: string,
    oldDefinition: TableDefinition,
    onNew: boolean,
  ): Promise<void> {
    const problem = distributionColumnProblem(oldDefinition, column);
    if (problem !== null) {
      throw refuse(
        `distributionColumn ${column} of ${quoteTable(table)}: ${problem}; choose a column of its primary key that every unique constraint includes`,
      );
    }
    if (!(await hasCitus(pools.get('new')))) {
      throw refuse(
        `distributionColumn is set for ${quoteTable(table)}, but the new database (${pools.display('new')}) has no Citus (create_distributed_table is missing): point the new connection at a Citus coordinator, or remove distributionColumn`,
      );
    }
    if (!onNew) return;
    const current = await distributionColumnOf(pools.get('new'), table);
    if (current !== column) {
      throw refuse(
        `${quoteTable(table)} on new is ${current === null ? 'not distributed' : `distributed by ${current}`}, not by ${column}: distribute it while it is empty (SELECT create_distributed_table('${quoteTable(table)}', '${column}')), or drop it and let the migration create it (createTables: true)`,
      );
    }
  }

  return {
    /** Both sides' identities now, for the migration to record (server-identity.ts). */
    bindServers: async (_input: { migration: string }): Promise<ServerBinding> => identities.bind(),

    /**
     * Checks every table, creates the missing ones on new when asked, claims them on both sides and
     * puts the TRUNCATE guard on them. Every refusal comes before a table is created or claimed; a
     * failure while creating drops the tables this call created, so nothing half done stays behind.
     */
    prepareTables: async (input: PrepareTablesInput): Promise<PreparedTables> => {
      const migrated = input.tables.map((entry) => entry.table);
      await Promise.all([ensureHelperSchema(pools.get('old')), ensureHelperSchema(pools.get('new'))]);
      // 1. Everything that needs no writing: old's side, new's when it exists, the hot-rows condition.
      const inspected: Inspected[] = [];
      const warnings: string[] = [];
      for (const entry of input.tables) {
        const oldShape = await readTableShape(pools.get('old'), entry.table, side('old'));
        const oldDefinition = (await readTableDefinition(pools.get('old'), entry.table))!;
        const newDefinition = await readTableDefinition(pools.get('new'), entry.table);
        if (newDefinition === undefined && !entry.createIfMissing) {
          throw refuse(
            `table ${quoteTable(entry.table)} does not exist on the new database (${pools.display('new')}): create it with the same definition as on old, or set createTables: true to let the migration create it`,
          );
        }
        if (newDefinition !== undefined) {
          const differences = compareDefinitions(oldDefinition, newDefinition, {
            migrated,
            foreignKeysLater: entry.createIfMissing,
            indexesLater: entry.createIfMissing,
          });
          refuseDifferences(entry.table, differences, false);
          const filled = await pools
            .get('new')
            .query<{ filled: boolean }>(`SELECT EXISTS (SELECT 1 FROM ${quoteTable(entry.table)}) AS filled`);
          if (filled.rows[0]?.filled === true) {
            warnings.push(
              `${quoteTable(entry.table)}: new already holds rows; the backfill keeps them as if newer than old's, and verification reports (and repairs) every one that differs from old`,
            );
          }
        }
        if (entry.distributionColumn !== undefined) {
          await checkDistribution(
            entry.table,
            entry.distributionColumn,
            oldDefinition,
            newDefinition !== undefined,
          );
        }
        if (entry.hotRowsWhere !== undefined) await checkRowPredicate(entry.table, entry.hotRowsWhere);
        inspected.push({ input: entry, oldShape, oldDefinition, newDefinition });
      }
      // 2. Create what is missing; 3. compare again and claim. Undone if anything fails.
      const createdNow: TableRef[] = [];
      try {
        for (const entry of inspected.filter((found) => found.newDefinition === undefined)) {
          try {
            await pools
              .get('new')
              .query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(entry.input.table.schema)}`);
            await createTargetTable(pools.get('new'), entry.oldDefinition, migrated, { deferIndexes: true });
            if (entry.input.distributionColumn !== undefined) {
              await distributeTable(pools.get('new'), entry.input.table, entry.input.distributionColumn);
            }
          } catch (err) {
            throw refuse(
              `cannot create ${quoteTable(entry.input.table)} on the new database: ${(err as Error).message}; create it yourself (types and extensions it uses must exist there)`,
            );
          }
          createdNow.push(entry.input.table);
        }
        const completeLater = input.tables
          .filter((entry) => entry.createIfMissing)
          .map((entry) => entry.table);
        const found = await definitionsNow(migrated, completeLater);
        await registry.claim(
          'old',
          input.migration,
          found.map((entry) => entry.old),
        );
        try {
          await registry.claim(
            'new',
            input.migration,
            found.map((entry) => entry.new),
          );
        } catch (err) {
          await registry.release('old', input.migration);
          throw err;
        }
        for (const connection of ['old', 'new'] as const) {
          await guards.installTruncateGuard({ ...input, connection, tables: migrated });
        }
        return {
          tables: inspected.map((entry) => ({
            table: entry.input.table,
            estimatedRows: entry.oldShape.estimatedRows,
          })),
          created: completeLater,
          warnings: [
            ...warnings,
            ...found.flatMap((entry, i) =>
              entry.warnings
                .filter((difference) => difference.severity === 'warn')
                .map(
                  (difference) => `${quoteTable(migrated[i]!)}: ${difference.subject}: ${difference.problem}`,
                ),
            ),
          ],
        };
      } catch (err) {
        for (const table of createdNow) {
          await pools
            .get('new')
            .query(`DROP TABLE IF EXISTS ${quoteTable(table)}`)
            .catch(() => undefined);
        }
        throw err;
      }
    },

    /**
     * After a schema change held the migration: compares old and new again and, when they match,
     * records the tables' definitions as they are now, so copying, syncing and verifying go on.
     * Refuses, listing the differences, while they do not match.
     */
    acceptSchemaChanges: async (input: {
      migration: string;
      servers: ServerBinding;
      tables: TableRef[];
      completeLater?: TableRef[];
    }): Promise<{ summary: string }> => {
      try {
        const found = await definitionsNow(input.tables, input.completeLater ?? []);
        await registry.claim(
          'old',
          input.migration,
          found.map((entry) => entry.old),
        );
        await registry.claim(
          'new',
          input.migration,
          found.map((entry) => entry.new),
        );
        return {
          summary: `old and new match again; ${found.length} tables' definitions recorded as they are now`,
        };
      } catch (err) {
        if (err instanceof MigrationFault && err.type === REFUSAL) {
          throw refuse(`the schema change is not complete on both sides yet: ${err.message}`);
        }
        throw err;
      }
    },

    /**
     * Adds, to tables the migration created on new, what had to wait for the backfill: the deferred
     * indexes and the foreign keys among the migrated tables. Each change is recorded in new's
     * registry as it commits, so a sync or a chunk never takes it for a schema change.
     */
    completeTargetTables: async (input: {
      migration: string;
      servers: ServerBinding;
      tables: TableRef[];
    }): Promise<{ created: string[] }> => {
      const created: string[] = [];
      for (const table of input.tables) {
        const definition = await readTableDefinition(pools.get('old'), table);
        if (definition === undefined) {
          throw refuse(
            `table ${quoteTable(table)} no longer exists on the old database (${pools.display('old')})`,
          );
        }
        const result = await completeTargetTable(pools.get('new'), definition, input.tables, {
          withinEachChange: async (client) => {
            const now = await readTableDefinition(client, table);
            await registry.claim(
              'new',
              input.migration,
              [{ shape: await readTableShape(client, table, side('new')), definition: now! }],
              client,
            );
          },
        });
        created.push(...result.created);
      }
      return { created };
    },
  };
}
