import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { processCache } from '../base/process-state.js';
import { isPortRange, mergeRanges, type PortRange } from '../base/port-numbers.js';
import { debugLetGo } from '../base/debug.js';

/** Ports the operating system keeps for others, and where that list came from. */
export interface ReservedPorts {
  /** Merged and sorted; empty when none are reserved or the list cannot be read. */
  ranges: readonly PortRange[];
  /** What the message of an exhausted search calls them. */
  source: string;
}

/** Where {@link readReservedPorts} gets its facts; a seam for tests of other platforms. */
export interface ReservedPortSources {
  platform: NodeJS.Platform;
  readFile: (path: string) => string;
  /** The output of `netsh interface ipv4 show excludedportrange protocol=tcp` (Windows only). */
  netsh: () => string;
}

const LINUX_RESERVED = '/proc/sys/net/ipv4/ip_local_reserved_ports';

const systemSources: ReservedPortSources = {
  platform: process.platform,
  readFile: (path) => readFileSync(path, 'utf8'),
  // Bounded: a hung netsh must not hang a claim. windowsHide: no console window flashes up.
  netsh: () =>
    execFileSync('netsh', ['interface', 'ipv4', 'show', 'excludedportrange', 'protocol=tcp'], {
      encoding: 'utf8',
      timeout: 5000,
      windowsHide: true,
      stdio: ['ignore', 'pipe', 'ignore'],
    }),
};

function toRange(first: number, last: number): PortRange | undefined {
  const range = [first, last];
  return isPortRange(range) ? range : undefined;
}

/**
 * Parses Linux's `ip_local_reserved_ports`: comma-separated ports and ranges such as
 * `8080,9000-9100`, empty when none. Malformed items are ignored.
 */
export function parseLinuxReservedPorts(text: string): PortRange[] {
  const ranges: PortRange[] = [];
  for (const item of text.trim().split(',')) {
    const match = /^\s*(\d+)(?:\s*-\s*(\d+))?\s*$/.exec(item);
    if (match === null) continue;
    const range = toRange(Number(match[1]), Number(match[2] ?? match[1]));
    if (range !== undefined) ranges.push(range);
  }
  return mergeRanges(ranges);
}

/**
 * Parses the table `netsh interface ipv4 show excludedportrange protocol=tcp` prints: one
 * `start end` pair per row, `*` after the administered ones. Only rows of two numbers
 * count, so headings in any language are passed over.
 */
export function parseNetshExcludedPorts(text: string): PortRange[] {
  const ranges: PortRange[] = [];
  for (const line of text.split(/\r?\n/)) {
    const match = /^\s*(\d+)\s+(\d+)(?:\s+\*)?\s*$/.exec(line);
    if (match === null) continue;
    const range = toRange(Number(match[1]), Number(match[2]));
    if (range !== undefined) ranges.push(range);
  }
  return mergeRanges(ranges);
}

/**
 * The ports the OS reserves: Linux's `ip_local_reserved_ports` (kept free for services
 * that will bind them later; a bind succeeds, so only this list shows them) and Windows'
 * excluded port ranges (Hyper-V, WinNAT; they move at every reboot and a bind fails with
 * EACCES). None elsewhere, or when the list cannot be read.
 */
export function readReservedPorts(sources: ReservedPortSources = systemSources): ReservedPorts {
  try {
    if (sources.platform === 'linux') {
      return { ranges: parseLinuxReservedPorts(sources.readFile(LINUX_RESERVED)), source: 'ip_local_reserved_ports' };
    }
    if (sources.platform === 'win32') {
      return { ranges: parseNetshExcludedPorts(sources.netsh()), source: 'Windows excluded port ranges' };
    }
  } catch (error) {
    // No /proc (some containers), netsh missing or failing: the bind probe still decides.
    debugLetGo('ports/reserved-ports', error);
  }
  return { ranges: [], source: 'reserved ports' };
}

/** {@link readReservedPorts} for this machine, read once per process (on Windows it spawns `netsh`). */
export function systemReservedPorts(): ReservedPorts {
  return processCache('reserved-ports', () => readReservedPorts());
}
