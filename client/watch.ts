// `migrate status --watch`: redraws a report every interval until the migration ends or the operator
// stops it (Ctrl-C). On a terminal the screen is redrawn in place (ANSI: home, clear); otherwise each
// report is printed as plain lines after a time stamp, fit for a log file.
export interface WatchOptions {
  intervalMs: number;
  /** Stop after this many reports (for scripts); unlimited without it. */
  count?: number;
  tty: boolean;
  write: (text: string) => void;
}

/** Draws `read()`'s lines until it says the end has come or `count` reports were drawn. */
export async function watch(
  read: () => Promise<{ lines: string[]; ended: boolean }>,
  options: WatchOptions,
): Promise<void> {
  let stopped = false;
  const stop = () => (stopped = true);
  process.once('SIGINT', stop);
  try {
    for (let drawn = 1; ; drawn++) {
      const { lines, ended } = await read();
      if (options.tty) options.write(`\x1b[H\x1b[2J${lines.join('\n')}\n`);
      else options.write(`--- ${new Date().toISOString()}\n${lines.join('\n')}\n`);
      if (ended || stopped || (options.count !== undefined && drawn >= options.count)) return;
      await new Promise((resolve) => setTimeout(resolve, options.intervalMs));
      if (stopped) return;
    }
  } finally {
    process.removeListener('SIGINT', stop);
  }
}
