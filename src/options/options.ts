import { defaultStateDir } from './default-state-dir.js';
import {
  describe,
  isValidHost,
  requireBoolean,
  requireExclusions,
  requireInteger,
  requireProtocol,
  requireKnownOptions,
  requireRange,
} from './option-checks.js';
import { MAX_PORT } from '../base/port-numbers.js';

export { isValidHost } from './option-checks.js';
export { defaultStateDir, STATE_DIR_ENV, STATE_DIR_TAKEN_WARNING } from './default-state-dir.js';
export type { AllocatorOptions, ClaimOptions, Protocol, ResolvedAllocatorOptions, ResolvedClaimOptions } from './option-types.js';
import type { AllocatorOptions, ClaimOptions, ResolvedAllocatorOptions, ResolvedClaimOptions } from './option-types.js';

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
 * The longest TTL: ten years. A claim's expiry is a date, and a date past JavaScript's last
 * one (about 275,000 years away) cannot be shown, compared or listed; a bound far below it
 * keeps every expiry a valid date, and no boot lasts this long anyway.
 */
export const MAX_TTL_MS = 10 * 365 * 24 * 60 * 60 * 1000;

function requireTtl(value: unknown): number {
  if (typeof value === 'number' && Number.isInteger(value) && value > MAX_TTL_MS) {
    throw new RangeError(`Expected option \`ttlMs\` to be at most ${MAX_TTL_MS} (ten years), got ${value}.`);
  }
  return requireInteger('ttlMs', value, 1, MAX_TTL_MS);
}

/** The names of {@link ClaimOptions}, every one. */
const CLAIM_OPTION_NAMES = [
  'base',
  'count',
  'host',
  'label',
  'pid',
  'ttlMs',
  'protocol',
  'exclude',
  'allowEphemeralPorts',
  'allowUnsafePorts',
  'allowReservedPorts',
  'max',
  'sticky',
] as const satisfies ReadonlyArray<keyof ClaimOptions>;

/** The names of {@link AllocatorOptions}, every one. */
const ALLOCATOR_OPTION_NAMES = [
  'stateDir',
  'lockTimeoutMs',
  'staleMs',
  'ephemeralPortRange',
  'socketTable',
] as const satisfies ReadonlyArray<keyof AllocatorOptions>;

const ALLOCATOR_ONLY: Readonly<Record<string, string>> = {
  ...Object.fromEntries(ALLOCATOR_OPTION_NAMES.map((name) => [name, `a setting of the allocator: new PortAllocator({ ${name} })`])),
  // The module-level functions take stateDir next to the claim's options.
  stateDir: 'where the state lives: pass it to new PortAllocator({ stateDir }), or to claimPorts({ stateDir })',
};
const CLAIM_ONLY: Readonly<Record<string, string>> = Object.fromEntries(
  CLAIM_OPTION_NAMES.map((name) => [name, `an option of a claim: allocator.claim({ ${name} })`]),
);

/**
 * Checks a caller's claim options and fills in the defaults. Throws `TypeError` or
 * `RangeError` naming the option and the value; touches no file.
 */
export function resolveClaimOptions(input: ClaimOptions = {}): ResolvedClaimOptions {
  if (typeof input !== 'object' || input === null) {
    throw new TypeError(`Expected options to be an object, got ${describe(input)}.`);
  }
  requireKnownOptions(input, 'claim', CLAIM_OPTION_NAMES, ALLOCATOR_ONLY);
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
  const ttlMs = input.ttlMs === undefined ? undefined : requireTtl(input.ttlMs);
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

/** Checks allocator settings and fills in the defaults (reading the environment once). */
export function resolveAllocatorOptions(input: AllocatorOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedAllocatorOptions {
  if (typeof input !== 'object' || input === null) {
    throw new TypeError(`Expected options to be an object, got ${describe(input)}.`);
  }
  requireKnownOptions(input, 'allocator', ALLOCATOR_OPTION_NAMES, CLAIM_ONLY);
  const stateDir = input.stateDir ?? defaultStateDir(env);
  if (typeof stateDir !== 'string' || stateDir === '') {
    throw new TypeError(`Expected option \`stateDir\` to be a non-empty string, got ${describe(stateDir)}.`);
  }
  const lockTimeoutMs = requireInteger('lockTimeoutMs', input.lockTimeoutMs ?? DEFAULT_LOCK_TIMEOUT_MS, 0, 2 ** 31 - 1);
  const staleMs = requireInteger('staleMs', input.staleMs ?? DEFAULT_STALE_MS, MIN_STALE_MS, 2 ** 31 - 1);
  const ephemeralPortRange =
    input.ephemeralPortRange === undefined ? undefined : requireRange('ephemeralPortRange', input.ephemeralPortRange);
  const socketTable = requireBoolean('socketTable', input.socketTable ?? true);
  return { stateDir, lockTimeoutMs, staleMs, ephemeralPortRange, socketTable };
}
