import { claimedPorts } from './search.js';
import { listenOn, type ListeningSockets } from '../ports/listen.js';
import type { StickyEntry } from '../store/sticky-memory.js';
import type { ClaimRecord } from '../store/format.js';

/** Ports held for their owner until released, or until the owner exits. */
export interface Lease extends AsyncDisposable {
  /** The claimed ports, consecutive and ascending. */
  readonly ports: readonly number[];
  /** The first claimed port (`ports[0]`). */
  readonly port: number;
  /** The host the ports were probed on. */
  readonly host: string;
  /** PID of the process the claim belongs to. */
  readonly pid: number;
  /** The label given to the claim, if any. */
  readonly label: string | undefined;
  /** Gives the ports back. Safe to call more than once. */
  release(): Promise<void>;
  /**
   * Listens on every port now, on `host` (default: the lease's host), and returns the
   * listening sockets: for a server in this process, or to hand to a child process as fds
   * 3, 4, ... (socket activation), so that no other process can bind a port between the
   * claim and the server's start. The lease is not released when the sockets close.
   *
   * @example
   * ```ts
   * const lease = await claimPorts({ count: 2, host: '127.0.0.1' });
   * const sockets = await lease.listen();
   * const child = spawn('sh', ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', 'sh', 'my-server'], {
   *   stdio: ['inherit', 'inherit', 'inherit', ...sockets.fds()],
   *   env: { ...process.env, ...sockets.env(['api', 'metrics']) },
   * });
   * await sockets.close(); // the child holds its own copies
   * ```
   * @throws Node's listen error (`EADDRINUSE`) for a port a process outside portlease bound since the probe.
   */
  listen(host?: string): Promise<ListeningSockets>;
}

/** A claim as reported by {@link PortAllocator.list}. */
export interface ClaimInfo {
  /** Unique id of the claim. */
  id: string;
  /** The claimed ports, consecutive and ascending. */
  ports: number[];
  /** The host the ports were probed on. */
  host: string;
  /** PID of the owner (in the owner's PID namespace). */
  pid: number;
  /** The claim's label, if any. */
  label: string | undefined;
  /** When the claim was made. */
  createdAt: Date;
  /** When the claim expires whatever its owner does, if it was made with a TTL. */
  expiresAt: Date | undefined;
  /** Whether the claim still holds its ports (owner alive, or TTL not reached). */
  live: boolean;
}

/**
 * A claim held elsewhere in this network namespace: by another user, or through another state
 * directory (a container with its own `/tmp`), as {@link PortAllocator.listElsewhere} reports
 * it. What it says of itself beyond its ports is its holder's word.
 */
export interface ClaimElsewhere {
  /** The claimed ports, consecutive and ascending. */
  ports: number[];
  /** The user id of whoever claimed them; `undefined` for tokens that no claim describes. */
  uid: number | undefined;
  /** That user's name on this system, if it has one here. */
  user: string | undefined;
  /** PID of the owner, in the owner's PID namespace, where the claim says. */
  pid: number | undefined;
  /** The claim's label, as far as it fits (letters, digits, `.`, `-`, `_`). */
  label: string | undefined;
}

/** The ports a label held last, as {@link PortAllocator.listSticky} reports them. */
export interface StickyPorts {
  /** The label of the sticky claims. */
  label: string;
  /** The ports its last claim got. */
  ports: number[];
  /** When that was. */
  usedAt: Date;
}

/** How `listSticky` reports a remembered label. */
export function toStickyPorts(entry: StickyEntry): StickyPorts {
  return { label: entry.label, ports: Array.from({ length: entry.count }, (_, i) => entry.start + i), usedAt: new Date(entry.usedAt) };
}

/** Which claims {@link PortAllocator.releaseWhere} gives back; omitted fields match anything. */
export interface ReleaseFilter {
  /** Only these ports. */
  ports?: number | readonly number[] | undefined;
  /** Only claims owned by this PID (or by one of these). */
  pid?: number | readonly number[] | undefined;
  /** Only claims with this label. */
  label?: string | undefined;
}

/** Options of {@link PortAllocator.list}. */
export interface ListOptions {
  /** Also report claims that no longer hold their ports (owner dead, TTL passed). */
  includeDead?: boolean | undefined;
}

/** The lease handed out for `claim`; `drop` removes the claim, at most once. */
export function toLease(claim: ClaimRecord, drop: () => Promise<void>): Lease {
  const ports = Object.freeze(claimedPorts(claim));
  let released: Promise<void> | undefined;
  const release = (): Promise<void> => {
    released ??= drop();
    return released;
  };
  const listen = (host: string = claim.host): Promise<ListeningSockets> => listenOn(ports, host);
  return {
    ports,
    port: claim.start,
    host: claim.host,
    pid: claim.pid,
    label: claim.label,
    release,
    listen,
    [Symbol.asyncDispose]: release,
  };
}

/** How `list` reports a stored claim. */
export function toClaimInfo(claim: ClaimRecord, live: boolean): ClaimInfo {
  return {
    id: claim.id,
    ports: claimedPorts(claim),
    host: claim.host,
    pid: claim.pid,
    label: claim.label,
    createdAt: new Date(claim.createdAt),
    expiresAt: claim.expiresAt === undefined ? undefined : new Date(claim.expiresAt),
    live,
  };
}
