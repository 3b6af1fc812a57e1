// Free TCP ports on loopback, a check that one is free, the refusal of a taken one, and (on Linux)
// whether a process group of ours is the one listening on a port.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import net from 'node:net';
import { OperatorError } from '../model/errors';

export function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}

/**
 * The lowest of the ports the system hands to outgoing connections (Linux's ip_local_port_range;
 * elsewhere the IANA dynamic range's, 49152).
 */
export function ephemeralPortsFrom(): number {
  try {
    const low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(low) && low > 0) return low;
  } catch {
    // Not Linux.
  }
  return 49152;
}

/** The lowest port freePort picks: below it sit the well-known services' ports. */
const LOWEST_CHOSEN_PORT = 10_000;

/** Ports this process has handed out: two servers started side by side never get the same one. */
const handedOut = new Set<number>();

/**
 * A port nothing listens on, for one of our servers. Chosen below the ephemeral range: a port the
 * kernel picks (listen on port 0) is one it also gives to outgoing connections, and between the
 * pick and the server's start a client's connection took one (a dev stack refused its Web UI port
 * 36035 in CI). Falls back to the kernel's pick when there is no room below that range.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const low = ephemeralPortsFrom();
  if (low - LOWEST_CHOSEN_PORT >= 1000) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = LOWEST_CHOSEN_PORT + Math.floor(Math.random() * (low - LOWEST_CHOSEN_PORT));
      if (handedOut.has(port) || !(await isPortFree(port, host))) continue;
      handedOut.add(port);
      return port;
    }
  }
  return kernelPickedPort(host);
}

function kernelPickedPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

/**
 * A port one of our servers needs is held by another process. A stack never attaches to whatever
 * listens there: two checkouts on one machine must not share a server by accident.
 */
export class PortTakenError extends OperatorError {
  constructor(
    readonly port: number,
    /** What the port is for, e.g. "Temporal" or "Temporal Web UI". */
    readonly role: string,
    /** The setting that chose the port (e.g. TEMPORAL_PORT), named in the advice. */
    setting?: string,
    /** Who is likely to hold it. */
    suspects = 'another dev stack or Temporal server',
  ) {
    super(
      `the ${role} port ${port} is taken by another process (maybe ${suspects}): ` +
        `stop that process, or ${setting !== undefined ? `set ${setting} to a free port` : 'choose another port'}`,
    );
  }
}

/** Refuses a port that something already listens on, before anything is started on it. */
export async function refuseTakenPort(port: number, role: string, setting?: string): Promise<void> {
  if (!(await isPortFree(port))) throw new PortTakenError(port, role, setting);
}

/** The port number of the first "bind: address already in use" in a server's output (Go's wording). */
export function portInUseIn(output: string): number | undefined {
  const match = /listen tcp \S*:(\d+): bind: address already in use/.exec(output);
  return match === null ? undefined : Number(match[1]);
}

// /proc/net/tcp{,6} addresses whose connections from 127.0.0.1 reach the listener: 127.0.0.1 and the
// wildcard, in IPv4 and (v4-mapped or wildcard) IPv6 form, as the kernel prints them on x86 and ARM.
const LOOPBACK_LISTEN_ADDRESSES = new Set([
  '0100007F',
  '00000000',
  '0000000000000000FFFF00000100007F',
  '00000000000000000000000000000000',
]);

/** Inodes of the sockets listening on 127.0.0.1:`port` (or the wildcard); undefined without /proc. */
function listeningSocketInodes(port: number): Set<string> | undefined {
  const inodes = new Set<string>();
  let readable = false;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
      readable = true;
    } catch {
      continue;
    }
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...; st 0A is LISTEN.
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      const [address, hexPort] = (fields[1] ?? '').split(':');
      if (fields[3] !== '0A' || hexPort === undefined || parseInt(hexPort, 16) !== port) continue;
      if (LOOPBACK_LISTEN_ADDRESSES.has(address ?? '') && fields[9] !== undefined) inodes.add(fields[9]);
    }
  }
  return readable ? inodes : undefined;
}

/** The processes of process group `pgid` (a child spawned detached leads a group of its own). */
function processGroupMembers(pgid: number): number[] {
  const members: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses, so count after the last ')'.
      const pgrp = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
      if (pgrp === pgid) members.push(Number(entry));
    } catch {
      // the process ended while we looked
    }
  }
  return members;
}

/**
 * Whether a process of group `pgid` holds the socket listening on 127.0.0.1:`port`, from /proc: the
 * kernel's own answer to "who answers on this port". Undefined where /proc cannot tell (not Linux, or
 * a member's descriptors are not ours to read).
 */
export function groupListensOn(pgid: number, port: number): boolean | undefined {
  const inodes = listeningSocketInodes(port);
  if (inodes === undefined) return undefined;
  if (inodes.size === 0) return false;
  let unreadable = false;
  for (const pid of processGroupMembers(pgid)) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      unreadable = true;
      continue;
    }
    for (const fd of fds) {
      try {
        const inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`))?.[1];
        if (inode !== undefined && inodes.has(inode)) return true;
      } catch {
        // the descriptor closed while we looked
      }
    }
  }
  return unreadable ? undefined : false;
}
