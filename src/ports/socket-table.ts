import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { readRegularFile, replaceFile } from '../base/fs.js';
import { currentNetworkNamespace } from '../base/proc.js';
import { debugLetGo } from '../base/debug.js';

/** Where {@link SocketTable} reads from; a seam for tests and for platforms without `/proc/net`. */
export interface SocketTableSource {
  /**
   * A cheap summary that changes whenever a TCP connection is opened (and, best effort, when
   * sockets come or go), or `undefined` where no socket table is available.
   */
  signal(): string | undefined;
  /** The full tables (Linux: `/proc/net/tcp` and `/proc/net/tcp6`). */
  tables(): string[];
}

const signalBuffer = Buffer.alloc(16 * 1024);

// The counter files are small, so a raw read into a reused buffer is enough and keeps
// the check at tens of microseconds.
function readSmall(path: string): string {
  const fd = openSync(path, 'r');
  try {
    return signalBuffer.toString('latin1', 0, readSync(fd, signalBuffer, 0, signalBuffer.length, null));
  } finally {
    closeSync(fd);
  }
}

/** `ActiveOpens/PassiveOpens` from the two `Tcp:` lines (names, then values) of `/proc/net/snmp`. */
function openCounters(snmp: string): string | undefined {
  const lines = snmp.split('\n').filter((line) => line.startsWith('Tcp:'));
  const names = lines[0]?.split(' ');
  const values = lines[1]?.split(' ');
  if (names === undefined || values === undefined) return undefined;
  const active = values[names.indexOf('ActiveOpens')];
  const passive = values[names.indexOf('PassiveOpens')];
  return active === undefined || passive === undefined ? undefined : `${active}/${passive}`;
}

/**
 * Linux's `/proc/net`; where it is missing, `signal()` is `undefined` and the bind probe
 * works alone. The signal is the TCP open counters of `/proc/net/snmp` (`active/passive`,
 * then the network namespace),
 * which count both families and only ever grow: every socket the table lists other than a
 * listener (ESTABLISHED, TIME_WAIT, ...) began as an active or passive open, so while they
 * stand still no port can have gained such a socket since the table was read. Sockets that
 * went away since only leave ports marked a little longer (until the maximum age), which is
 * safe. Socket counts (`/proc/net/sockstat`) are deliberately left out: every bind probe of
 * every process moves them, which would defeat the cache exactly when many processes claim.
 */
export const procNetSource: SocketTableSource = {
  signal() {
    if (process.platform !== 'linux') return undefined;
    try {
      const counters = openCounters(readSmall('/proc/net/snmp'));
      // The counters and the tables are those of this network namespace, while the shared
      // file is per host: containers sharing a state volume must not take each other's.
      const netns = currentNetworkNamespace();
      return counters === undefined || netns === undefined ? undefined : `${counters}/${netns}`;
    } catch {
      return undefined;
    }
  },
  tables() {
    const tables: string[] = [];
    for (const path of ['/proc/net/tcp', '/proc/net/tcp6']) {
      try {
        tables.push(readFileSync(path, 'latin1'));
      } catch (error) {
        // tcp6 is missing without IPv6; a missing table has no sockets to report.
        debugLetGo('ports/socket-table', error);
      }
    }
    return tables;
  },
};

// TCP_LISTEN in the kernel's state numbering, as /proc/net/tcp prints it.
const LISTEN_STATE = '0A';

/**
 * Marks the local port of every socket row of a `/proc/net/tcp{,6}` table in `ports`,
 * except listeners. Every other state counts (ESTABLISHED, TIME_WAIT, CLOSE_WAIT, ...): a
 * program that binds without `SO_REUSEADDR` fails on a port any of them holds, while Node's
 * probe binds it. Listeners are left to the bind probe, which always sees them: a cached
 * row of a listener closed since would only keep its port from being handed out. Ports marked
 * here for the first time are also pushed to `marked`, when given.
 */
export function markLocalPorts(table: string, ports: Uint8Array, marked?: number[]): void {
  // Rows look like "  12: 0100007F:1F90 00000000:0000 0A ..."; the port is the hex after the
  // second ':' of the row, the state the two hex digits after the remote address.
  let lineStart = table.indexOf('\n') + 1;
  while (lineStart > 0 && lineStart < table.length) {
    const lineEnd = table.indexOf('\n', lineStart);
    const colon = table.indexOf(':', table.indexOf(':', lineStart) + 1);
    if (colon === -1 || (lineEnd !== -1 && colon > lineEnd)) break;
    const remoteEnd = table.indexOf(' ', table.indexOf(':', colon + 1));
    const state = table.slice(remoteEnd + 1, remoteEnd + 3);
    const port = Number.parseInt(table.slice(colon + 1, colon + 5), 16);
    if (state !== LISTEN_STATE && port > 0 && port < 65536 && ports[port] === 0) {
      ports[port] = 1;
      marked?.push(port);
    }
    lineStart = lineEnd + 1;
  }
}

/**
 * Which opens since a snapshot make it out of date. A passive open (a connection accepted by
 * a listener) gives a socket on the listener's port, which may be any port: it always counts.
 * An active open (an outgoing connection) gets its local port from the kernel's ephemeral
 * range, so it only counts for a search that may hand out ports of that range (`'all'`).
 * Counting outgoing connections too would make every claim on a machine full of clients
 * walk the kernel's table (see bench/RESULTS.md).
 */
export type WatchedOpens = 'passive' | 'all';

/** Options of a {@link SocketTable}. */
export interface SocketTableOptions {
  source?: SocketTableSource;
  /** Re-read the tables after this long even when the signal did not move. */
  maxAgeMs?: number;
  now?: () => number;
  /**
   * A file through which processes share the parsed table (in the state directory): a
   * fresh process whose signal matches reads a few bytes instead of making the kernel walk
   * its connection table, which matters when many processes start at once.
   */
  cacheFile?: string | undefined;
  /** Mode of the cache file. */
  cacheFileMode?: number;
}

/**
 * Whether a snapshot read at `snapshot.at` with `snapshot.signal` still tells every port a
 * non-listening socket uses: no open that matters happened since, and it is not too old.
 */
function isCurrent(snapshot: { signal: string; at: number }, signal: string, now: number, maxAgeMs: number, opens: WatchedOpens): boolean {
  if (now - snapshot.at >= maxAgeMs) return false;
  if (opens === 'all') return snapshot.signal === signal;
  return passiveOpens(snapshot.signal) === passiveOpens(signal);
}

/** The part of an `active/passive/netns` signal after the active count (a signal of another shape is compared whole). */
function passiveOpens(signal: string): string {
  return signal.slice(signal.indexOf('/') + 1);
}

// Every port in use, six characters each, is under 400 KiB.
const MAX_SHARED_TABLE_BYTES = 2 ** 20;

interface SharedSnapshot {
  signal: string;
  at: number;
  ports: number[];
}

function isSharedSnapshot(value: unknown): value is SharedSnapshot {
  const snapshot = value as Partial<SharedSnapshot> | null;
  return (
    typeof snapshot === 'object' &&
    snapshot !== null &&
    typeof snapshot.signal === 'string' &&
    typeof snapshot.at === 'number' &&
    Array.isArray(snapshot.ports) &&
    snapshot.ports.every((port) => Number.isInteger(port) && port > 0 && port < 65536)
  );
}

/**
 * The local ports of every non-listening TCP socket on this machine, cached. Reading
 * `/proc/net/tcp{,6}` makes the kernel walk its whole connection hash table (milliseconds, however few sockets
 * there are), so the parsed table is reused while the cheap signal stays the same (see
 * {@link procNetSource}), and re-read at the latest once it is `maxAgeMs` old, so that ports
 * whose sockets are gone are not skipped for long.
 */
export class SocketTable {
  private readonly source: SocketTableSource;
  private readonly maxAgeMs: number;
  private readonly now: () => number;
  private readonly cacheFile: string | undefined;
  private readonly cacheFileMode: number;
  private cached: { signal: string; at: number; ports: Uint8Array } | undefined;
  private tableReads = 0;

  constructor(options: SocketTableOptions = {}) {
    this.source = options.source ?? procNetSource;
    this.maxAgeMs = options.maxAgeMs ?? DEFAULT_SOCKET_TABLE_MAX_AGE_MS;
    this.now = options.now ?? Date.now;
    this.cacheFile = options.cacheFile;
    this.cacheFileMode = options.cacheFileMode ?? 0o600;
  }

  /** How many times the full tables were read (for tests and benchmarks). */
  get reads(): number {
    return this.tableReads;
  }

  /**
   * One byte per port, 1 where some local non-listening TCP socket uses it; `undefined`
   * where this platform has no socket table. The array is shared: do not modify it.
   */
  portsInUse(opens: WatchedOpens = 'all'): Uint8Array | undefined {
    const cached = this.cachedPortsInUse(opens);
    if (cached !== null) return cached;
    const signal = this.source.signal()!;
    const now = this.now();
    const ports = new Uint8Array(65536);
    // The list is what the shared file holds; collected while parsing rather than by a
    // pass over all 65,536 entries, which a fresh process would run as cold code.
    const marked: number[] = [];
    for (const table of this.source.tables()) markLocalPorts(table, ports, marked);
    this.tableReads++;
    this.cached = { signal, at: now, ports };
    this.writeShared(this.cached, marked);
    return ports;
  }

  /**
   * {@link portsInUse} if it can be answered from a copy (this process's or the shared
   * file), else `null`: the kernel's tables must be read. Cheap; for use before taking a lock.
   */
  cachedPortsInUse(opens: WatchedOpens = 'all'): Uint8Array | undefined | null {
    const signal = this.source.signal();
    if (signal === undefined) return undefined;
    const now = this.now();
    if (this.cached !== undefined && isCurrent(this.cached, signal, now, this.maxAgeMs, opens)) return this.cached.ports;
    return this.readShared(signal, now, opens) ?? null;
  }

  private readShared(signal: string, now: number, opens: WatchedOpens): Uint8Array | undefined {
    if (this.cacheFile === undefined) return undefined;
    let snapshot: unknown;
    try {
      // Read without blocking, regular files only: a FIFO or a device planted there is refused.
      snapshot = JSON.parse(readRegularFile(this.cacheFile, MAX_SHARED_TABLE_BYTES).toString('utf8'));
    } catch {
      return undefined;
    }
    if (!isSharedSnapshot(snapshot) || snapshot.at > now || !isCurrent(snapshot, signal, now, this.maxAgeMs, opens)) return undefined;
    const ports = new Uint8Array(65536);
    for (const port of snapshot.ports) ports[port] = 1;
    this.cached = { signal: snapshot.signal, at: snapshot.at, ports };
    return ports;
  }

  private writeShared(cached: { signal: string; at: number }, ports: readonly number[]): void {
    if (this.cacheFile === undefined) return;
    try {
      // Never through a planted name: a FIFO, or a symlink to another file (see replaceFile).
      replaceFile(this.cacheFile, JSON.stringify({ signal: cached.signal, at: cached.at, ports }), this.cacheFileMode);
    } catch (error) {
      // Only an optimization: the next process reads the tables itself.
      debugLetGo('ports/socket-table', error);
    }
  }
}

/**
 * How long a socket table snapshot is reused while the signal stays the same. Only ports of
 * sockets closed since stay skipped that long; most of them sit in TIME_WAIT for 60 s anyway.
 */
export const DEFAULT_SOCKET_TABLE_MAX_AGE_MS = 5000;
