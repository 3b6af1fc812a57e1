// Mirrors the application does not wait for. While no read of the application goes to the side a
// write is mirrored to (`dual_write`, `shadow`: model/stages.ts mirrorsMayTrail), nobody can read the
// mirror before it lands, so a write answers the application as soon as the authoritative side
// committed it, and its mirror (the request for the keys it wrote, then the sync on the other side)
// follows off the request's path. A shadow read compares new once the mirrors running at its read
// landed. Each such mirror still counts as a write in flight for the write fence until it is done,
// so neither the switch nor the step into `live` (reads on new) happens under one. Their number is
// bounded: beyond `limit`, a write waits for its own mirror as in `live`, so a slow other side slows
// writes down instead of piling mirrors up.

const LANDED = Promise.resolve();

/** The default of `maxPendingMirrors`. */
export const MAX_PENDING_MIRRORS = 64;

export class PendingMirrors {
  private readonly running = new Set<Promise<void>>();

  constructor(
    private readonly limit: number = MAX_PENDING_MIRRORS,
    /** Told the count of running mirrors whenever it changes (the router's gauge). */
    private readonly report: (count: number) => void = () => undefined,
  ) {}

  /** Mirrors still running now. */
  get count(): number {
    return this.running.size;
  }

  /** Whether one more mirror may run without the application waiting for it. */
  get hasRoom(): boolean {
    return this.running.size < this.limit;
  }

  /**
   * Keeps `mirror` until it is done, then runs `done`. A mirror never rejects (a failed one queues its
   * keys); should one, no application is taken down by an unhandled rejection.
   */
  track(mirror: Promise<void>, done: () => void): void {
    const tracked = mirror
      .catch(() => undefined)
      .finally(() => {
        this.running.delete(tracked);
        this.report(this.running.size);
        done();
      });
    this.running.add(tracked);
    this.report(this.running.size);
  }

  /** Resolves when every mirror running now is done (not those started meanwhile); never rejects. */
  landed(): Promise<void> {
    if (this.running.size === 0) return LANDED;
    return Promise.all([...this.running]).then(() => undefined);
  }

  /** Resolves when every mirror running now, and any started meanwhile, is done. */
  async settled(): Promise<void> {
    while (this.running.size > 0) await Promise.all([...this.running]);
  }
}
