import { MAX_PORT, type PortRange } from '../base/port-numbers.js';
import { SkipRuleSet, systemEphemeralRange } from './port-ranges.js';
import { systemReservedPorts } from './reserved-ports.js';
import type { ResolvedClaimOptions } from '../options/options.js';
import type { WatchedOpens, SocketTable } from './socket-table.js';

/**
 * The ports a claim's search passes over without probing: those its options rule out, and
 * those a local TCP socket uses (from the kernel's socket table, where there is one).
 */
export class SkippedPorts {
  readonly rules: SkipRuleSet;
  private readonly socketTable: SocketTable | undefined;
  /** One byte per port, 1 where a local TCP socket uses it; `'unread'` until read under the lock. */
  private inUse: Uint8Array | undefined | 'unread';
  private readonly opens: WatchedOpens;

  /**
   * @param opens - `'passive'` when the search never hands out a port of the kernel's
   *   ephemeral range, where outgoing connections get theirs (see {@link WatchedOpens}).
   */
  constructor(rules: SkipRuleSet, socketTable: SocketTable | undefined, opens: WatchedOpens) {
    this.rules = rules;
    this.socketTable = socketTable;
    this.opens = opens;
    // A current copy (this process's, or one another process shared) is used before the lock.
    this.inUse = socketTable === undefined ? undefined : (socketTable.cachedPortsInUse(opens) ?? 'unread');
  }

  /**
   * Reads the kernel's table if no current copy was found before the lock. Called inside the
   * lock on purpose: when many processes start at once, the first reads it and shares a
   * copy, and the rest find that copy.
   */
  refreshInsideLock(): void {
    if (this.inUse === 'unread') this.inUse = this.socketTable!.portsInUse(this.opens);
  }

  /** Whether the search passes over `port`. */
  has(port: number): boolean {
    return this.rules.has(port) || (this.inUse instanceof Uint8Array && this.inUse[port] === 1);
  }

  /** What was passed over from `base` to `max`, for the "exhausted" message. */
  describe(base: number, max: number = MAX_PORT): string[] {
    const parts = this.rules.describe(base, max);
    if (this.inUse instanceof Uint8Array) {
      let count = 0;
      for (let port = base; port <= max; port++) count += this.inUse[port]!;
      if (count > 0) parts.push(`${count} port${count === 1 ? '' : 's'} used by local TCP sockets`);
    }
    return parts;
  }
}

/**
 * Which opens make a socket table snapshot out of date for `request`: outgoing connections
 * take ports of the kernel's ephemeral range, so a search that skips that very range (the
 * default) need not re-read the table for them.
 */
export function watchedOpens(request: ResolvedClaimOptions, ephemeralPortRange: PortRange | undefined): WatchedOpens {
  return request.allowEphemeralPorts || ephemeralPortRange !== undefined ? 'all' : 'passive';
}

/**
 * Builds the {@link SkipRuleSet} of each claim's rules, reusing the last one while a caller
 * repeats its rules (building the bitmap is a visible share of a hot claim).
 */
export class SkipRuleSetCache {
  private last: { key: string; rules: SkipRuleSet } | undefined;
  private readonly ephemeralPortRange: PortRange | undefined;

  /** @param ephemeralPortRange - the allocator's setting; `undefined` reads the OS's range. */
  constructor(ephemeralPortRange: PortRange | undefined) {
    this.ephemeralPortRange = ephemeralPortRange;
  }

  /** The rules of `request`, with `ephemeralPortRange` as the allocator's setting (default: this cache's). */
  for(request: ResolvedClaimOptions, ephemeralPortRange: PortRange | undefined = this.ephemeralPortRange): SkipRuleSet {
    const ephemeral = request.allowEphemeralPorts ? undefined : (ephemeralPortRange ?? systemEphemeralRange());
    const reserved = request.allowReservedPorts ? undefined : systemReservedPorts();
    const key = `${ephemeral?.join('-') ?? ''}|${request.allowUnsafePorts}|${JSON.stringify(request.exclude)}|${reserved !== undefined}`;
    if (this.last?.key !== key)
      this.last = { key, rules: new SkipRuleSet({ ephemeral, unsafe: !request.allowUnsafePorts, exclude: request.exclude, reserved }) };
    return this.last.rules;
  }
}
