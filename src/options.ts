import { tmpdir } from 'node:os';
import { join } from 'node:path';
import envPaths from 'env-paths';
import {
  describe,
  isValidHost,
  requireBoolean,
  requireExclusions,
  requireInteger,
  requireProtocol,
  requireRange,
} from './option-checks.js';
import { MAX_PORT, type PortExclusion, type PortRange } from './port-ranges.js';

export { isValidHost } from './option-checks.js';

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
   * Accept a state directory that other users can write (group-writable, owned by
   * someone else), for several users deliberately sharing one directory.
   * @default process.env.PORTLEASE_SHARED_STATE_DIR === '1'
   */
  sharedStateDir?: boolean | undefined;
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
  sharedStateDir: boolean;
  /** `undefined`: read from the OS when first needed. */
  ephemeralPortRange: PortRange | undefined;
  socketTable: boolean;
}

/** Environment variable that overrides the default state directory. */
export const STATE_DIR_ENV = 'PORTLEASE_STATE_DIR';
/** Environment variable that opts in to a state directory shared by several users (`1`). */
export const SHARED_STATE_DIR_ENV = 'PORTLEASE_SHARED_STATE_DIR';

/**
 * Prefix of the environment variables through which {@link claimOnce} hands a process
 * tree's ports down: `PORTLEASE_ONCE_<NAME>`. Written by the claiming process for its
 * descendants; the one variable portlease writes rather than only reads.
 */
export const ONCE_ENV_PREFIX = 'PORTLEASE_ONCE_';

/** The environment variable of the `claimOnce` name `name` (letters, digits, `_`). */
export function onceEnvName(name: string): string {
  if (typeof name !== 'string' || !/^[A-Za-z0-9_]{1,64}$/.test(name)) {
    throw new TypeError(`Expected \`name\` to be 1 to 64 letters, digits or underscores, got ${JSON.stringify(name)}.`);
  }
  return `${ONCE_ENV_PREFIX}${name.toUpperCase()}`;
}

/** What an ancestor's `claimOnce(name)` left in the environment, if anything. */
export function inheritedOnceValue(name: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env[onceEnvName(name)];
}

export const DEFAULT_BASE = 8090;
export const DEFAULT_COUNT = 1;
export const DEFAULT_HOST = '0.0.0.0';
const DEFAULT_LOCK_TIMEOUT_MS = 10_000;
const DEFAULT_STALE_MS = 2000;
// proper-lockfile's own floor. Where mtimes have 1 s granularity, a lock taken at x.999 s is
// stamped x.000 and would look a second old at once; and a broken-and-retaken lock could not
// be told from the old one within the same second.
const MIN_STALE_MS = 2000;
const MAX_LABEL_LENGTH = 200;

/**
 * Checks a caller's claim options and fills in the defaults. Throws `TypeError` or
 * `RangeError` naming the option and the value; touches no file.
 */
export function resolveClaimOptions(input: ClaimOptions = {}): ResolvedClaimOptions {
  if (typeof input !== 'object' || input === null) {
    throw new TypeError(`Expected options to be an object, got ${describe(input)}.`);
  }
  const base = requireInteger('base', input.base ?? DEFAULT_BASE, 1, MAX_PORT);
  const count = requireInteger('count', input.count ?? DEFAULT_COUNT, 1, MAX_PORT);
  if (base + count - 1 > MAX_PORT) {
    throw new RangeError(
      `Expected option \`count\` to fit below port ${MAX_PORT} from base ${base}, got ${count} (the run would end at ${base + count - 1}).`,
    );
  }
  const host = input.host ?? DEFAULT_HOST;
  if (typeof host !== 'string') {
    throw new TypeError(`Expected option \`host\` to be a string, got ${describe(host)} (${typeof host}).`);
  }
  if (!isValidHost(host)) {
    throw new TypeError(`Expected option \`host\` to be an IP address or host name, got ${describe(host)}.`);
  }
  const label = input.label;
  if (label !== undefined) {
    if (typeof label !== 'string') {
      throw new TypeError(`Expected option \`label\` to be a string, got ${describe(label)} (${typeof label}).`);
    }
    if (label.length > MAX_LABEL_LENGTH) {
      throw new RangeError(`Expected option \`label\` to be at most ${MAX_LABEL_LENGTH} characters, got ${label.length}.`);
    }
  }
  const pid = requireInteger('pid', input.pid ?? process.pid, 1, 2 ** 32 - 1);
  const ttlMs = input.ttlMs === undefined ? undefined : requireInteger('ttlMs', input.ttlMs, 1, Number.MAX_SAFE_INTEGER);
  const protocol = requireProtocol(input.protocol ?? 'tcp');
  const exclude = requireExclusions(input.exclude ?? []);
  const allowEphemeralPorts = requireBoolean('allowEphemeralPorts', input.allowEphemeralPorts ?? false);
  const allowUnsafePorts = requireBoolean('allowUnsafePorts', input.allowUnsafePorts ?? false);
  const allowReservedPorts = requireBoolean('allowReservedPorts', input.allowReservedPorts ?? false);
  const max = requireInteger('max', input.max ?? MAX_PORT, 1, MAX_PORT);
  if (base + count - 1 > max) {
    throw new RangeError(
      `Expected option \`max\` to leave room for ${count} port${count === 1 ? '' : 's'} from base ${base} (at least ${base + count - 1}), got ${max}.`,
    );
  }
  const sticky = requireBoolean('sticky', input.sticky ?? false);
  if (sticky && label === undefined) {
    throw new TypeError('Expected option `label` with `sticky: true`: the label names the ports to remember.');
  }
  return {
    base,
    count,
    host,
    label,
    pid,
    ttlMs,
    protocol,
    exclude,
    allowEphemeralPorts,
    allowUnsafePorts,
    allowReservedPorts,
    max,
    sticky,
  };
}

/**
 * The default state directory: the environment variable, else a temporary directory of this
 * user's own: `<tmp>/portlease-<uid>` where there are uids, env-paths' `temp` on Windows.
 */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env[STATE_DIR_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  // A temporary directory lives as long as the boot on most systems, like the claims it holds.
  // Named by uid, not as env-paths names it on Linux (after the basename of HOME): service
  // accounts whose HOME is / or /nonexistent would share one directory, and the second user
  // would be refused; the same user with another HOME (sudo, env -i) would not coordinate.
  const uid = process.getuid?.();
  if (uid !== undefined) return join(tmpdir(), `portlease-${uid}`);
  // Windows: the temporary directory is already per user.
  return envPaths('portlease', { suffix: '' }).temp;
}

/** Checks allocator settings and fills in the defaults (reading the environment once). */
export function resolveAllocatorOptions(input: AllocatorOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedAllocatorOptions {
  if (typeof input !== 'object' || input === null) {
    throw new TypeError(`Expected options to be an object, got ${describe(input)}.`);
  }
  const stateDir = input.stateDir ?? defaultStateDir(env);
  if (typeof stateDir !== 'string' || stateDir === '') {
    throw new TypeError(`Expected option \`stateDir\` to be a non-empty string, got ${describe(stateDir)}.`);
  }
  const lockTimeoutMs = requireInteger('lockTimeoutMs', input.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS, 0, 2 ** 31 - 1);
  const staleMs = requireInteger('staleMs', input.staleMs ?? DEFAULT_STALE_MS, MIN_STALE_MS, 2 ** 31 - 1);
  const sharedStateDir = input.sharedStateDir ?? env[SHARED_STATE_DIR_ENV] === '1';
  if (typeof sharedStateDir !== 'boolean') {
    throw new TypeError(`Expected option \`sharedStateDir\` to be a boolean, got ${describe(sharedStateDir)}.`);
  }
  const ephemeralPortRange =
    input.ephemeralPortRange === undefined ? undefined : requireRange('ephemeralPortRange', input.ephemeralPortRange);
  const socketTable = requireBoolean('socketTable', input.socketTable ?? true);
  return { stateDir, lockTimeoutMs, staleMs, sharedStateDir, ephemeralPortRange, socketTable };
}

/**
 * Environment variable naming a {@link PausePoint} at which the process stops itself, for
 * tests of the write fencing only. Not part of the public interface.
 */
export const TEST_PAUSE_ENV = 'PORTLEASE_TEST_PAUSE_AT';

/** The pause point a test asked for, if any. */
export function requestedPausePoint(env: NodeJS.ProcessEnv = process.env): string | undefined {
  return env[TEST_PAUSE_ENV] || undefined;
}
