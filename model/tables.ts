// Tables and keys as every layer speaks of them: a table's name, its shape to the data path
// (columns, primary key, what is copied), and ranges of its keys. Plain data, no behaviour.

export interface TableRef {
  schema: string;
  table: string;
}

export interface ColumnShape {
  name: string;
  /** format_type() of the column, e.g. "numeric(12,2)" or "text[]". */
  type: string;
  notNull: boolean;
  /** A generated column: computed on each side, never copied. */
  generated?: boolean;
}

export interface TableShape {
  table: TableRef;
  columns: ColumnShape[];
  /** Primary key columns, in key order. */
  primaryKey: string[];
  /** format_type() of each primary key column, in key order: keys travel as text and are cast back. */
  primaryKeyTypes: string[];
  /** Columns that rows are copied by (every column but generated ones), in the table's order. */
  copyColumns: string[];
  /**
   * GENERATED ALWAYS identity columns: inserts of copied values must override them, and an update
   * may not set them (their value never changes after the insert, on either side).
   */
  alwaysIdentity: string[];
  estimatedRows: number;
  totalBytes: number;
}

/** A range of keys: after `lower` (exclusive; null = from the smallest) up to `upper` (inclusive). */
export interface KeyRange {
  lower: string[] | null;
  upper: string[];
}

/** A key range whose upper end may be open too (null = to the largest key there is). */
export interface OpenKeyRange {
  lower: string[] | null;
  upper: string[] | null;
}
