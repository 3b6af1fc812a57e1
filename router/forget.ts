// After a mirror committed a write's keys on the other side, the change log entries that capture
// wrote for that write are no longer needed: the mirror read the rows after the write committed, so
// the other side holds that write or a later state. Deleting exactly those entries (by id) keeps
// reconciliation from syncing the same keys a second time. A later write of the same key has an
// entry of its own, which stays; an entry whose mirror failed, timed out or never ran (the process
// died after its commit, hazard 4) stays too, and reconciliation repairs from it.
// The deletes stay off the application's path: the ids gathered over LINGER_MS go in one statement
// on a session of their own, committed without waiting for the WAL flush (riding along with the next
// write's request for its keys cost every mirrored write about 0.4 ms one at a time). Losing them (a
// crash, a failed delete, an old server's restart) costs only a second, harmless sync of those keys.
import type pg from 'pg';
import { HELPER_SCHEMA } from '../db/helper-schema';
import type { Logger } from '../db/logger';
import { quoteLiteral } from '../db/sql';
import type { ConnectionName } from '../model/connections';

/** How long ids wait for a write to carry them before they are deleted on their own, in ms. */
const LINGER_MS = 100;

/** SQL that deletes these entries of the migration's change log, committing without the WAL flush. */
export function forgetSql(migration: string, entries: readonly string[]): string {
  // The ids come from the change log's bigint column, noted as text; anything else is refused.
  if (!entries.every((entry) => /^[0-9]+$/.test(entry))) throw new Error('change log ids must be integers');
  return `SELECT set_config('synchronous_commit', 'off', true), ${HELPER_SCHEMA}.forget_mirrored(${quoteLiteral(migration)}, '{${entries.join(',')}}'::bigint[])`;
}

export class MirroredEntries {
  private readonly pending: Record<ConnectionName, string[]> = { old: [], new: [] };
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly migration: string,
    /** The sessions to delete with, by the side whose change log holds the entries. */
    private readonly pools: Record<ConnectionName, pg.Pool>,
    private readonly logger: Logger,
  ) {}

  /** Entries of `side`'s change log whose keys a mirror has committed on the other side. */
  applied(side: ConnectionName, entries: readonly string[]): void {
    if (entries.length === 0) return;
    this.pending[side].push(...entries);
    this.timer ??= setTimeout(() => void this.flush(), LINGER_MS).unref();
  }

  /**
   * SQL that deletes the entries gathered for `side` (which the caller now owns: if its statement
   * fails they are not tried again), or undefined when there are none.
   */
  private take(side: ConnectionName): string | undefined {
    const entries = this.pending[side];
    if (entries.length === 0) return undefined;
    this.pending[side] = [];
    return forgetSql(this.migration, entries);
  }

  /** Deletes the gathered entries now; never throws. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    // One flush at a time, so deletes of one side never queue up on the mirror's sessions.
    this.flushing = this.flushing.then(() =>
      Promise.all((['old', 'new'] as const).map((side) => this.forget(side))).then(() => undefined),
    );
    return this.flushing;
  }

  private async forget(side: ConnectionName): Promise<void> {
    const sql = this.take(side);
    if (sql === undefined) return;
    try {
      await this.pools[side].query(sql);
    } catch (err) {
      this.logger.debug(
        { err, side },
        'could not delete mirrored change log entries; reconciliation syncs their keys again',
      );
    }
  }
}
