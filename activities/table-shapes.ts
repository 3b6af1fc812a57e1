// Table shapes for the activities that run once per chunk or per batch: read from the catalog once
// per worker process and table, then reused. A migration refuses schema changes on migrated tables,
// so a shape does not change while the migration runs.
import type { ConnectionName } from '../config/connections';
import { readTableShape, type TableRef, type TableShape } from './inspector';
import type { NamedPools } from './pools';

export class TableShapes {
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
}
