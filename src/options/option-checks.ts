/**
 * The checks behind {@link resolveClaimOptions} and {@link resolveAllocatorOptions}: each
 * throws a `TypeError` or `RangeError` that names the option and the value.
 */
import { isIP } from 'node:net';
import { MAX_PORT, mergeRanges, type PortRange } from '../base/port-numbers.js';
import type { Protocol } from './option-types.js';

// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens.
const HOSTNAME_PATTERN = /^(?=.{1,253}$)[a-z\d](?:[a-z\d-]{0,61}[a-z\d])?(?:\.[a-z\d](?:[a-z\d-]{0,61}[a-z\d])?)*\.?$/i;

/** A value as an error message shows it. */
export function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'bigint') return `${value}n`;
  return String(value);
}

/** `value` as an integer from `min` to `max`. */
export function requireInteger(name: string, value: unknown, min: number, max: number): number {
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

/** `value` as a boolean. */
export function requireBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') {
    throw new TypeError(`Expected option \`${name}\` to be a boolean, got ${describe(value)} (${typeof value}).`);
  }
  return value;
}

const PROTOCOLS: readonly Protocol[] = ['tcp', 'udp', 'both'];

/** `value` as a {@link Protocol}. */
export function requireProtocol(value: unknown): Protocol {
  if (typeof value !== 'string') {
    throw new TypeError(`Expected option \`protocol\` to be a string, got ${describe(value)} (${typeof value}).`);
  }
  if (!(PROTOCOLS as readonly string[]).includes(value)) {
    throw new RangeError(`Expected option \`protocol\` to be 'tcp', 'udp' or 'both', got ${describe(value)}.`);
  }
  return value as Protocol;
}

/** Checks a `[first, last]` port range; `name` is the option, for the message. */
export function requireRange(name: string, value: unknown): PortRange {
  if (!Array.isArray(value) || value.length !== 2) {
    const what = name === 'exclude' ? 'entries to be ports or [first, last] ranges' : 'to be a [first, last] port range';
    throw new TypeError(`Expected option \`${name}\` ${what}, got ${JSON.stringify(value) ?? describe(value)}.`);
  }
  const first = requireInteger(name, value[0], 1, MAX_PORT);
  const last = requireInteger(name, value[1], 1, MAX_PORT);
  if (first > last) {
    throw new RangeError(`Expected option \`${name}\` ranges to be [first, last] with first <= last, got [${first}, ${last}].`);
  }
  return [first, last];
}

/** The `exclude` option: ports and ranges, merged and sorted. */
export function requireExclusions(value: unknown): PortRange[] {
  if (!Array.isArray(value)) {
    throw new TypeError(
      `Expected option \`exclude\` to be an array of ports and [first, last] ranges, got ${describe(value)} (${typeof value}).`,
    );
  }
  return mergeRanges(
    value.map((entry: unknown) => {
      if (typeof entry === 'number') {
        const port = requireInteger('exclude', entry, 1, MAX_PORT);
        return [port, port] as const;
      }
      return requireRange('exclude', entry);
    }),
  );
}

/** How many single-character edits turn `a` into `b` (for "did you mean"). */
function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * Refuses option names that are not in `known`: a typo (`cuont`) would otherwise be ignored
 * without a word. Names that belong elsewhere (`elsewhere`, e.g. an allocator setting passed
 * to a claim) say where they go; others get the closest known name.
 *
 * @throws {TypeError} naming the option.
 */
export function requireKnownOptions(
  input: object,
  what: string,
  known: readonly string[],
  elsewhere: Readonly<Record<string, string>> = {},
): void {
  for (const name of Object.keys(input)) {
    if (known.includes(name)) continue;
    const home = Object.hasOwn(elsewhere, name) ? elsewhere[name] : undefined;
    if (home !== undefined) throw new TypeError(`Unknown ${what} option \`${name}\`: it is ${home}.`);
    const closest = [...known].sort((a, b) => editDistance(name, a) - editDistance(name, b))[0];
    const hint =
      closest !== undefined && editDistance(name, closest) <= Math.max(2, Math.floor(name.length / 3))
        ? ` Did you mean \`${closest}\`?`
        : '';
    throw new TypeError(`Unknown ${what} option \`${name}\`.${hint} Known: ${known.join(', ')}.`);
  }
}
