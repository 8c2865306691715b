import { isIP } from 'node:net';
import envPaths from 'env-paths';

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
}

/** {@link ClaimOptions} with every default filled in and every value checked. */
export interface ResolvedClaimOptions {
  base: number;
  count: number;
  host: string;
  label: string | undefined;
  pid: number;
  ttlMs: number | undefined;
}

/** Settings of a {@link PortAllocator}. */
export interface AllocatorOptions {
  /**
   * Directory holding the state file and its lock.
   * @default process.env.PORTLEASE_STATE_DIR, else a per-user temporary directory (env-paths `temp`)
   */
  stateDir?: string | undefined;
  /**
   * How long to wait for the cross-process lock before failing with `PORTLEASE_LOCK_TIMEOUT`.
   * @default 10000
   */
  lockTimeoutMs?: number | undefined;
  /**
   * After how long a held lock counts as abandoned (its holder crashed) and may be broken.
   * Work under the lock takes well under a millisecond, so this only bounds crash recovery.
   * @default 2000
   */
  staleMs?: number | undefined;
  /**
   * Accept a state directory that other users can write (group-writable, owned by
   * someone else), for several users deliberately sharing one directory.
   * @default process.env.PORTLEASE_SHARED_STATE_DIR === '1'
   */
  sharedStateDir?: boolean | undefined;
}

/** {@link AllocatorOptions} with every default filled in and every value checked. */
export interface ResolvedAllocatorOptions {
  stateDir: string;
  lockTimeoutMs: number;
  staleMs: number;
  sharedStateDir: boolean;
}

/** Environment variable that overrides the default state directory. */
export const STATE_DIR_ENV = 'PORTLEASE_STATE_DIR';
/** Environment variable that opts in to a state directory shared by several users (`1`). */
export const SHARED_STATE_DIR_ENV = 'PORTLEASE_SHARED_STATE_DIR';

export const DEFAULT_BASE = 8090;
export const DEFAULT_COUNT = 1;
export const DEFAULT_HOST = '0.0.0.0';
export const MAX_PORT = 65535;
const DEFAULT_LOCK_TIMEOUT_MS = 10_000;
const DEFAULT_STALE_MS = 2000;
// Below one second a lock could be judged abandoned on filesystems whose mtimes have 1 s granularity.
const MIN_STALE_MS = 1000;
const MAX_LABEL_LENGTH = 200;
// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
const HOSTNAME_PATTERN = /^(?=.{1,253}$)[a-z\d](?:[a-z\d-]{0,61}[a-z\d])?(?:\.[a-z\d](?:[a-z\d-]{0,61}[a-z\d])?)*\.?$/i;

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  return String(value);
}

function requireInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number') {
    throw new TypeError(`Expected option \`${name}\` to be a number, got ${describe(value)} (${typeof value}).`);
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`Expected option \`${name}\` to be an integer from ${min} to ${max}, got ${describe(value)}.`);
  }
  return value;
}

/** Whether `host` is an IP literal or a well-formed host name. */
export function isValidHost(host: string): boolean {
  return isIP(host) !== 0 || HOSTNAME_PATTERN.test(host);
}

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
  return { base, count, host, label, pid, ttlMs };
}

/** The default state directory: the environment variable, else the per-user temporary directory. */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env[STATE_DIR_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  // `temp` lives as long as the boot on most systems, like the claims it holds.
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
  return { stateDir, lockTimeoutMs, staleMs, sharedStateDir };
}
