import { FOREIGN_OWNER_MAX_AGE_MS, PID_REUSE_GUARD_MS } from '../liveness/liveness.js';
import { isPort, MAX_PORT } from '../base/port-numbers.js';
import type { ClaimRecord } from '../store/format.js';

/** Tells whether a claim's owner, which made it `ageMs` ago, still runs; see `OwnerLiveness`. */
export type OwnerCheck = (claim: ClaimRecord, ageMs: number) => boolean;

/**
 * Whether a claim still holds its ports at `now`: a claim with an expiry lives until then,
 * whatever happens to its owner; any other claim lives exactly as long as its owner.
 */
export function isClaimLive(claim: ClaimRecord, now: number, isAlive: OwnerCheck): boolean {
  if (claim.expiresAt !== undefined) return now < claim.expiresAt;
  return isAlive(claim, now - claim.createdAt);
}

/** Memoizes owner checks for the length of one critical section (many claims share an owner). */
export function memoizeOwnerCheck(check: OwnerCheck): OwnerCheck {
  const seen = new Map<string, boolean>();
  return (claim, ageMs) => {
    // Claims of one owner are checked differently by age (see PID_REUSE_GUARD_MS, FOREIGN_OWNER_MAX_AGE_MS).
    const age = ageMs < PID_REUSE_GUARD_MS ? 'young' : ageMs < FOREIGN_OWNER_MAX_AGE_MS ? 'old' : 'ancient';
    const key = `${claim.pidNs ?? ''}:${claim.pid}:${claim.startTime ?? ''}:${claim.beacon ?? ''}:${age}`;
    let alive = seen.get(key);
    if (alive === undefined) {
      alive = check(claim, ageMs);
      seen.set(key, alive);
    }
    return alive;
  };
}

/** The ports of a claim, in order. */
export function claimedPorts(claim: Pick<ClaimRecord, 'start' | 'count'>): number[] {
  return Array.from({ length: claim.count }, (_, index) => claim.start + index);
}

/** What a search found, and which claims it found dead on the way. */
export interface SearchResult {
  /** First port of the lowest free run, or `undefined` when none fits. */
  start: number | undefined;
  /** Claims that blocked the way but whose owner is gone: to be dropped. */
  dead: Set<ClaimRecord>;
}

/**
 * The claims that reach `base` or above, sorted by first port. Sorted as numbers that encode
 * (start, index), natively, without a comparator call per pair: with thousands of live
 * claims the search ran into sorting most of all.
 */
function claimsByStart(claims: readonly ClaimRecord[], base: number): ClaimRecord[] {
  const keys = new Float64Array(claims.length);
  let length = 0;
  for (let index = 0; index < claims.length; index++) {
    const claim = claims[index]!;
    // start < 2^16 and index < 2^32: the key stays an exact integer below 2^53.
    if (claim.start + claim.count > base) keys[length++] = claim.start * 2 ** 32 + index;
  }
  const sortedKeys = keys.subarray(0, length).sort();
  const sorted = new Array<ClaimRecord>(length);
  for (let position = 0; position < length; position++) sorted[position] = claims[sortedKeys[position]! % 2 ** 32]!;
  return sorted;
}

/**
 * Finds the lowest run of `count` consecutive ports at or above `base` that no live claim
 * covers and `isExcluded` does not reject. Liveness is checked lazily, only for claims the
 * search runs into, so the cost does not grow with unrelated claims' owners.
 */
export function findFreeRun(
  claims: readonly ClaimRecord[],
  base: number,
  count: number,
  isSkippedPort: (port: number) => boolean,
  isLive: (claim: ClaimRecord) => boolean,
  max: number = MAX_PORT,
): SearchResult {
  const dead = new Set<ClaimRecord>();
  const sorted = claimsByStart(claims, base);
  let candidate = base;
  let next = 0;
  scan: while (candidate + count - 1 <= max) {
    // Claims are sorted by start: skip those wholly below the candidate, test those overlapping it.
    for (let index = next; index < sorted.length; index++) {
      const claim = sorted[index]!;
      const end = claim.start + claim.count - 1;
      if (claim.start >= candidate + count) break;
      if (end < candidate || dead.has(claim)) {
        if (index === next) next++;
        continue;
      }
      if (!isLive(claim)) {
        dead.add(claim);
        continue;
      }
      candidate = end + 1;
      continue scan;
    }
    for (let port = candidate + count - 1; port >= candidate; port--) {
      if (isSkippedPort(port)) {
        candidate = port + 1;
        continue scan;
      }
    }
    return { start: candidate, dead };
  }
  return { start: undefined, dead };
}

/** What {@link removePorts} took out of one claim. */
export interface RemovedPorts {
  id: string;
  /** The ports removed. */
  ports: number[];
  /** Whether the claim went whole. */
  whole: boolean;
}

/**
 * Removes `ports` (or every port, when `ports` is undefined) from the claims `matches`
 * selects, splitting a claimed run where only part of it is released. Returns the kept
 * claims, the ports released, and what went of each claim.
 */
export function removePorts(
  claims: readonly ClaimRecord[],
  matches: (claim: ClaimRecord) => boolean,
  ports: ReadonlySet<number> | undefined,
): { kept: ClaimRecord[]; released: number[]; removed: RemovedPorts[] } {
  const kept: ClaimRecord[] = [];
  const released: number[] = [];
  const removed: RemovedPorts[] = [];
  for (const claim of claims) {
    // Untouched claims stay the same objects: the state store writes only what changed.
    if (!matches(claim) || (ports !== undefined && !claimedPorts(claim).some((port) => ports.has(port)))) {
      kept.push(claim);
      continue;
    }
    let runStart: number | undefined;
    const end = claim.start + claim.count;
    const removedHere: number[] = [];
    for (let port = claim.start; port <= end; port++) {
      const keep = port < end && ports !== undefined && !ports.has(port);
      if (port < end && !keep) removedHere.push(port);
      if (keep && runStart === undefined) runStart = port;
      if (!keep && runStart !== undefined) {
        kept.push({ ...claim, start: runStart, count: port - runStart });
        runStart = undefined;
      }
    }
    released.push(...removedHere);
    removed.push({ id: claim.id, ports: removedHere, whole: true });
  }
  // A claim split by an earlier partial release has several records: it went whole only if
  // no record of its id is left.
  const left = new Set(kept.map((claim) => claim.id));
  for (const entry of removed) entry.whole = !left.has(entry.id);
  return { kept, released, removed };
}

/**
 * The `ports` of a release filter as a set, validated.
 * @throws {TypeError | RangeError} when it is not a port number or an array of them.
 */
export function toPortSet(ports: number | readonly number[] | undefined): Set<number> | undefined {
  if (ports === undefined) return undefined;
  const list = typeof ports === 'number' ? [ports] : ports;
  if (!Array.isArray(list)) throw new TypeError(`Expected \`ports\` to be a port number or an array of them, got ${String(ports)}.`);
  for (const port of list) {
    if (!isPort(port)) {
      throw new RangeError(
        `Expected \`ports\` to hold integers from 1 to 65535, got ${typeof port === 'number' ? String(port) : JSON.stringify(port)}.`,
      );
    }
  }
  return new Set(list);
}
