/**
 * The option types of claims and allocators, with their documentation and defaults. How
 * they are checked and filled in is options.ts.
 */
import type { PortExclusion, PortRange } from '../base/port-numbers.js';

/** Which port spaces a claimed port must be free in: TCP, UDP, or both. */
export type Protocol = 'tcp' | 'udp' | 'both';

/** Options of one claim. Every field is optional; see {@link resolveClaimOptions} for the defaults. */
export interface ClaimOptions {
  /**
   * Lowest port to consider; the search goes upwards from here.
   * @default 8090
   */
  base?: number | undefined;
  /**
   * How many consecutive ports to claim.
   * @default 1
   */
  count?: number | undefined;
  /**
   * Address the ports must be free to bind on.
   * @default '0.0.0.0'
   */
  host?: string | undefined;
  /** Free text shown in listings, e.g. the job or service name. */
  label?: string | undefined;
  /**
   * Claim on behalf of another live process: the claim lives as long as that process.
   * @default process.pid
   */
  pid?: number | undefined;
  /**
   * Let the claim expire this many milliseconds after it is made, whether or not
   * its owner is alive. Without it, a claim lives exactly as long as its owner.
   */
  ttlMs?: number | undefined;
  /**
   * Which port spaces the ports must be free in. `'both'` asks for ports free for TCP and
   * for UDP (e.g. for HTTP/3 next to HTTP/1.1 on the same number).
   * @default 'tcp'
   */
  protocol?: Protocol | undefined;
  /**
   * Ports never to hand out: single ports and inclusive `[first, last]` ranges.
   * @default []
   * @example [5432, [6379, 6380]]
   */
  exclude?: readonly PortExclusion[] | undefined;
  /**
   * Also hand out ports of the kernel's ephemeral range (Linux `ip_local_port_range`,
   * e.g. 32768–60999). Off by default because any outgoing connection may take such a port
   * between the claim and the owner's bind.
   * @default false
   */
  allowEphemeralPorts?: boolean | undefined;
  /**
   * Also hand out ports that browsers refuse to connect to (the Fetch standard's bad
   * ports, e.g. 6000, 6665–6669, 10080).
   * @default false
   */
  allowUnsafePorts?: boolean | undefined;
  /**
   * Also hand out ports the OS reserves: Linux `ip_local_reserved_ports` (kept for services
   * that bind later), Windows' excluded port ranges (Hyper-V, WinNAT; binds there fail anyway).
   * @default false
   */
  allowReservedPorts?: boolean | undefined;
  /**
   * Highest port to hand out: the whole run lies at or below it (a firewall's range, a
   * team's port block). A search that finds nothing up to here fails with `PORTLEASE_EXHAUSTED`.
   * @default 65535
   */
  max?: number | undefined;
  /**
   * First try the ports this claim's `label` held last time (remembered in the state
   * directory, across releases and restarts), if they are free and unclaimed; else search
   * as usual. For dev servers that want the same port every run (bookmarks, OAuth redirect
   * URIs). Needs a `label`.
   * @default false
   */
  sticky?: boolean | undefined;
}

/** {@link ClaimOptions} with every default filled in and every value checked. */
export interface ResolvedClaimOptions {
  base: number;
  count: number;
  host: string;
  label: string | undefined;
  pid: number;
  ttlMs: number | undefined;
  protocol: Protocol;
  /** Merged and sorted. */
  exclude: PortRange[];
  allowEphemeralPorts: boolean;
  allowUnsafePorts: boolean;
  allowReservedPorts: boolean;
  max: number;
  sticky: boolean;
}

/** Settings of a {@link PortAllocator}. */
export interface AllocatorOptions {
  /**
   * Directory holding the state file and its lock.
   * @default process.env.PORTLEASE_STATE_DIR, else `<tmp>/portlease-<uid>` (on Windows env-paths `temp`)
   */
  stateDir?: string | undefined;
  /**
   * How long to wait for the cross-process lock before failing with `PORTLEASE_LOCK_TIMEOUT`.
   * @default 10000
   */
  lockTimeoutMs?: number | undefined;
  /**
   * After how long a lock that a waiter sees unchanged, by its own monotonic clock, counts
   * as abandoned (its holder crashed or is paused) and may be broken; at least 2000. Work
   * under the lock takes a few milliseconds at most (tens when the socket table must be
   * read), so this only bounds crash recovery; a paused holder's writes are fenced.
   * @default 2000
   */
  staleMs?: number | undefined;
  /**
   * The ephemeral port range that claims skip (unless `allowEphemeralPorts`), as an
   * inclusive `[first, last]`, instead of the one read from the OS.
   * @default read from the OS (Linux `/proc/sys/net/ipv4/ip_local_port_range`, macOS `sysctl net.inet.ip.portrange`), else 49152–65535
   */
  ephemeralPortRange?: PortRange | undefined;
  /**
   * On Linux, skip ports that any local TCP socket uses (LISTEN, ESTABLISHED, TIME_WAIT, ...)
   * as listed in `/proc/net/tcp{,6}`: a program binding without `SO_REUSEADDR` fails on those
   * although Node's probe binds them. Turn off only if reading the table is too slow (very
   * many sockets); the bind probe alone then decides.
   * @default true
   */
  socketTable?: boolean | undefined;
}

/** {@link AllocatorOptions} with every default filled in and every value checked. */
export interface ResolvedAllocatorOptions {
  stateDir: string;
  lockTimeoutMs: number;
  staleMs: number;
  /** `undefined`: read from the OS when first needed. */
  ephemeralPortRange: PortRange | undefined;
  socketTable: boolean;
}
