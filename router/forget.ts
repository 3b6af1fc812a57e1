// After a mirror committed a write's keys on the other side, the change log entries that capture
// wrote for that write are no longer needed: the mirror read the rows after the write committed, so
// the other side holds that write or a later state. Deleting exactly those entries (by id) keeps
// reconciliation from syncing the same keys a second time. A later write of the same key has an
// entry of its own, which stays; an entry whose mirror failed, timed out or never ran (the process
// died after its commit, hazard 4) stays too, and reconciliation repairs from it.
// The deletes run off the application's path: ids are gathered for a moment and deleted in one
// statement per side, committed without waiting for the WAL flush. Losing them (a crash, a failed
// delete, an old server's restart) costs only a second, harmless sync of those keys.
import type pg from 'pg';
import { HELPER_SCHEMA } from '../db/helper-schema';
import type { Logger } from '../db/logger';
import type { ConnectionName } from '../model/connections';

/** How long ids gather before they are deleted, in ms: one delete covers the mirrors of that time. */
const LINGER_MS = 20;

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
    const entries = this.pending[side];
    if (entries.length === 0) return;
    this.pending[side] = [];
    try {
      await this.pools[side].query(
        `SELECT set_config('synchronous_commit', 'off', true), ${HELPER_SCHEMA}.forget_mirrored($1, $2::bigint[])`,
        [this.migration, entries],
      );
    } catch (err) {
      this.logger.debug(
        { err, side, entries: entries.length },
        'could not delete mirrored change log entries; reconciliation syncs their keys again',
      );
    }
  }
}
