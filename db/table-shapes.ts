// Table shapes for the router's mirror, which runs with every write the application makes: read
// from the catalog once per table and kept, so a mirror costs no catalog query. The router forgets
// them whenever the migration's stage changes (an accepted schema change included); a mirror that
// meets a changed table fails, and its keys go to reconciliation, whose syncs check the table's
// definition against the migration's registry every time (table-registry.ts).
import type { ConnectionName } from '../model/connections';
import { readTableShape } from './inspector';
import type { TableRef, TableShape } from '../model/tables';
import type { NamedPools } from './pools';
import type { SyncShapes } from './sync';

export class TableShapes implements SyncShapes {
  private readonly shapes = new Map<string, Promise<TableShape>>();

  constructor(private readonly pools: NamedPools) {}

  get(connection: ConnectionName, table: TableRef): Promise<TableShape> {
    const id = `${connection}:${table.schema}.${table.table}`;
    let shape = this.shapes.get(id);
    if (shape === undefined) {
      shape = readTableShape(this.pools.get(connection), table, {
        name: connection,
        display: this.pools.display(connection),
      });
      // A failed read is not remembered: the next attempt reads the catalog again.
      shape.catch(() => this.shapes.delete(id));
      this.shapes.set(id, shape);
    }
    return shape;
  }

  forSync(input: { from: ConnectionName; table: TableRef }): Promise<TableShape> {
    return this.get(input.from, input.table);
  }

  /** Reads every table's shape again when next asked. */
  forget(): void {
    this.shapes.clear();
  }
}
