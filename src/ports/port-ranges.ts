import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { processCache } from '../base/process-state.js';
import { formatRanges, isPortRange, MAX_PORT, mergeRanges, type PortRange } from '../base/port-numbers.js';
import { debugLetGo } from '../base/debug.js';

/** The IANA dynamic/private range, used where the OS does not tell its own. */
export const IANA_EPHEMERAL_RANGE: PortRange = [49152, 65535];

/**
 * Ports browsers refuse to connect to: the Fetch standard's "bad ports"
 * (https://fetch.spec.whatwg.org/#port-blocking), which Chromium (`net/base/port_util.cc`,
 * `kRestrictedPorts`) and Firefox (`gBadPortList`) enforce. A dev server handed one of
 * these would answer `ERR_UNSAFE_PORT` in the browser. Chromium's own list lacked 4190 and
 * 6679 when this was written; the standard added them in 2024, so both are kept.
 */
export const UNSAFE_PORTS: readonly number[] = Object.freeze([
  1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101, 102, 103, 104, 109, 110, 111, 113, 115, 117,
  119, 123, 135, 137, 139, 143, 161, 179, 389, 427, 465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636,
  989, 990, 993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080,
]);

/** Where {@link readEphemeralRange} gets its facts; a seam for tests of other platforms. */
export interface EphemeralRangeSources {
  platform: NodeJS.Platform;
  readFile: (path: string) => string;
  sysctl: (names: readonly string[]) => string;
}

const systemSources: EphemeralRangeSources = {
  platform: process.platform,
  readFile: (path) => readFileSync(path, 'utf8'),
  // Bounded: a hung sysctl must not hang a claim.
  sysctl: (names) => execFileSync('sysctl', ['-n', ...names], { encoding: 'utf8', timeout: 2000, stdio: ['ignore', 'pipe', 'ignore'] }),
};

function toRange(text: string): PortRange | undefined {
  const range = text.trim().split(/\s+/).map(Number);
  return isPortRange(range) ? range : undefined;
}

/**
 * The range the kernel picks local ports of outgoing connections from: Linux
 * `/proc/sys/net/ipv4/ip_local_port_range`, the BSDs' and macOS's
 * `net.inet.ip.portrange.first/last`, else (Windows, or when reading fails) the IANA
 * 49152–65535. A port in there can be taken by any `connect()` between a claim and the
 * owner's bind.
 */
export function readEphemeralRange(sources: EphemeralRangeSources = systemSources): PortRange {
  try {
    if (sources.platform === 'linux') {
      return toRange(sources.readFile('/proc/sys/net/ipv4/ip_local_port_range')) ?? IANA_EPHEMERAL_RANGE;
    }
    if (sources.platform === 'darwin' || sources.platform === 'freebsd') {
      return toRange(sources.sysctl(['net.inet.ip.portrange.first', 'net.inet.ip.portrange.last'])) ?? IANA_EPHEMERAL_RANGE;
    }
  } catch (error) {
    // No /proc (some containers), no sysctl on PATH: the IANA range is the documented default.
    debugLetGo('ports/port-ranges', error);
  }
  return IANA_EPHEMERAL_RANGE;
}

/** {@link readEphemeralRange} for this machine, read once per process (macOS spawns `sysctl`). */
export function systemEphemeralRange(): PortRange {
  return processCache('ephemeral-range', () => readEphemeralRange());
}

/** What a claim skips before probing anything, and why. */
export interface SkipRules {
  /** The ephemeral range, when it is skipped. */
  ephemeral: PortRange | undefined;
  /** Whether the browsers' unsafe ports are skipped. */
  unsafe: boolean;
  /** The caller's exclusions, merged and sorted. */
  exclude: readonly PortRange[];
  /** Ports the OS reserves, and what they are called, when they are skipped. */
  reserved?: { ranges: readonly PortRange[]; source: string } | undefined;
}

/**
 * Ports a search must pass over, as a bitmap: one byte per port, so the search (which may
 * step over the whole ephemeral range port by port) pays an array load per port, never a
 * hash lookup. Built once per claim, before the lock is taken.
 */
export class SkipRuleSet {
  private readonly skipped = new Uint8Array(65536);

  constructor(readonly rules: SkipRules) {
    if (rules.ephemeral !== undefined) this.skipRange(rules.ephemeral);
    if (rules.unsafe) for (const port of UNSAFE_PORTS) this.skipped[port] = 1;
    for (const range of rules.exclude) this.skipRange(range);
    for (const range of rules.reserved?.ranges ?? []) this.skipRange(range);
  }

  /** Whether the rules skip `port`. */
  has(port: number): boolean {
    return this.skipped[port] === 1;
  }

  /** The rules that matter from `base` to `max`, for an exhausted-search message: `ephemeral ports 32768-60999, ...`. */
  describe(base: number, max: number = MAX_PORT): string[] {
    const parts: string[] = [];
    const { ephemeral, unsafe, exclude, reserved } = this.rules;
    const within = ([first, last]: PortRange): boolean => last >= base && first <= max;
    if (ephemeral !== undefined && within(ephemeral)) parts.push(`ephemeral ports ${formatRanges([ephemeral])}`);
    const unsafeWithin = UNSAFE_PORTS.filter((port) => port >= base && port <= max);
    if (unsafe && unsafeWithin.length > 0)
      parts.push(`browser-unsafe ports ${formatRanges(mergeRanges(unsafeWithin.map((port) => [port, port])))}`);
    const excluded = exclude.filter(within);
    if (excluded.length > 0) parts.push(`excluded ports ${formatRanges(excluded)}`);
    const reservedWithin = reserved?.ranges.filter(within) ?? [];
    if (reservedWithin.length > 0) parts.push(`reserved ports ${formatRanges(reservedWithin)} (${reserved!.source})`);
    return parts;
  }

  private skipRange([first, last]: PortRange): void {
    this.skipped.fill(1, first, last + 1);
  }
}
