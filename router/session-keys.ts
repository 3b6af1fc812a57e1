// The keys a router's own sessions write, for their mirrors. Once per session the router asks the
// capture trigger to note them (live_migrate.collect and live_migrate.notify on: helper-schema.ts,
// note_written). Helpers that know the notices send each key as an INFO message with the
// statement's own response, so when a write returns the router already holds its keys: no request
// on the authoritative side before the mirror. Helpers older than the notices keep the keys in the
// session's live_migrate.written setting, read and cleared with one request after the write, as
// routers did before; the router asks for it after a statement that wrote rows (or may have: CALL,
// DO) and was sent no key. It also asks after a write of a table no migration captures, which is
// sent none. A SELECT that writes through a function, on helpers older than the notices, leaves its
// keys in the setting until the next request; the change log brings them meanwhile.
// Keys sent by a transaction that rolls back (a ROLLBACK, a failed COMMIT or autocommit statement)
// are dropped; those of a savepoint rolled back are kept and only mirrored for nothing (a mirror
// re-reads the authoritative rows).
import type pg from 'pg';
import {
  COLLECT_SETTING,
  NOTIFY_SETTING,
  WRITTEN_NOTICE_CODE,
  WRITTEN_NOTICE_LIMIT,
  WRITTEN_SETTING,
} from '../db/helper-schema';
import type { Logger } from '../db/logger';
import type { RouterMetrics } from './metrics';
import { bothWritten, NOTHING_WRITTEN, parseWrittenKeys, writtenKeysOf, type WrittenKeys } from './mirror';

/** Commands that write rows when their row count is above 0. */
const ROW_WRITES = new Set(['INSERT', 'UPDATE', 'DELETE', 'MERGE', 'COPY']);
/** Commands that may write rows whatever their row count says. */
const MAY_WRITE = new Set(['CALL', 'DO']);

interface SessionNotes {
  /** The keys sent since they were last taken, one noted line each. */
  lines: string[];
  /** More keys were sent than one mirror lists (or the trigger said '*'). */
  overflow: boolean;
  /** Where the session's transaction started in `lines` (and whether it had overflowed by then). */
  transactionStart: { lines: number; overflow: boolean };
  /** Keys sent so far (never reset), to tell whether a statement was sent any. */
  received: number;
  /** A statement wrote rows and was sent no key: the setting may hold them. */
  askSetting: boolean;
}

/** Where a statement started, for `afterStatement`. */
export type StatementMark = number;

export class SessionKeys {
  private readonly sessions = new WeakMap<pg.ClientBase, SessionNotes>();

  constructor(
    private readonly metrics: RouterMetrics,
    private readonly logger: Logger,
  ) {}

  /** Asks the capture trigger to note this session's keys (once per session; call it while idle). */
  async collect(client: pg.ClientBase): Promise<void> {
    if (this.sessions.has(client)) return;
    await client.query(`SET ${COLLECT_SETTING} = on; SET ${NOTIFY_SETTING} = on`);
    const notes: SessionNotes = {
      lines: [],
      overflow: false,
      transactionStart: { lines: 0, overflow: false },
      received: 0,
      askSetting: false,
    };
    client.on('notice', (notice: { code?: string; message?: string }) => {
      if (notice.code === WRITTEN_NOTICE_CODE) noted(notes, notice.message ?? '');
    });
    this.sessions.set(client, notes);
  }

  /** Before a statement of the application on a collecting session. */
  beforeStatement(client: pg.ClientBase): StatementMark {
    const notes = this.sessions.get(client);
    if (notes === undefined) return 0;
    if (client.getTransactionStatus() === 'I') {
      notes.transactionStart = { lines: notes.lines.length, overflow: notes.overflow };
    }
    return notes.received;
  }

  /** After the statement returned: a rollback drops its transaction's keys. */
  afterStatement(client: pg.ClientBase, mark: StatementMark, result: pg.QueryResult): void {
    const notes = this.sessions.get(client);
    if (notes === undefined) return;
    const results = Array.isArray(result) ? (result as pg.QueryResult[]) : [result];
    if (results.some((one) => one.command === 'ROLLBACK') && client.getTransactionStatus() === 'I') {
      dropTransaction(notes);
      return;
    }
    if (notes.received === mark && results.some(mayHaveWritten)) notes.askSetting = true;
  }

  /** After the statement failed: a failure that ended the transaction drops its keys. */
  afterFailure(client: pg.ClientBase): void {
    const notes = this.sessions.get(client);
    if (notes !== undefined && client.getTransactionStatus() === 'I') dropTransaction(notes);
  }

  /**
   * The keys the session committed since the last call, and forgets them; never throws. Call it as
   * soon as the session is idle after a write, before any later statement of the session: the keys
   * sent so far are taken at once, the setting (when it may hold some) is asked for next.
   */
  async take(client: pg.ClientBase): Promise<WrittenKeys> {
    const notes = this.sessions.get(client);
    if (notes === undefined) return NOTHING_WRITTEN;
    const noticed = notes.overflow ? { tables: [], overflow: true } : this.parsed(notes.lines);
    const ask = notes.askSetting;
    notes.lines = [];
    notes.overflow = false;
    notes.askSetting = false;
    if (!ask) {
      if (noticed.overflow || noticed.tables.length > 0) this.metrics.writtenKeys('notice');
      return noticed;
    }
    this.metrics.writtenKeys('asked');
    return bothWritten(noticed, await this.readSetting(client));
  }

  /** The keys of the lines sent; a line that is not one (never expected) makes it too many to list. */
  private parsed(lines: readonly string[]): WrittenKeys {
    try {
      return writtenKeysOf(lines);
    } catch (err) {
      this.logger.warn({ err }, 'could not read the keys a write committed; reconciliation brings them');
      return { tables: [], overflow: true };
    }
  }

  private async readSetting(client: pg.ClientBase): Promise<WrittenKeys> {
    try {
      const { rows } = await client.query<{ written: string | null }>(
        `SELECT current_setting('${WRITTEN_SETTING}', true) AS written, set_config('${WRITTEN_SETTING}', '', false)`,
      );
      return parseWrittenKeys(rows[0]?.written ?? null);
    } catch (err) {
      // The write committed; only the mirror is lost, and the change log still holds the keys.
      this.logger.warn({ err }, 'could not read the keys a write committed; reconciliation brings them');
      return NOTHING_WRITTEN;
    }
  }
}

function noted(notes: SessionNotes, line: string): void {
  notes.received++;
  if (notes.overflow) return;
  if (line === '*' || notes.lines.length >= WRITTEN_NOTICE_LIMIT) {
    notes.overflow = true;
    notes.lines = [];
  } else {
    notes.lines.push(line);
  }
}

function dropTransaction(notes: SessionNotes): void {
  // An overflow that came in the transaction dropped the keys committed before it too: it stays, and
  // the change log drain brings them all.
  if (notes.overflow && !notes.transactionStart.overflow) return;
  notes.lines.length = Math.min(notes.lines.length, notes.transactionStart.lines);
}

function mayHaveWritten(result: pg.QueryResult): boolean {
  if (MAY_WRITE.has(result.command)) return true;
  return ROW_WRITES.has(result.command) && (result.rowCount ?? 0) > 0;
}
