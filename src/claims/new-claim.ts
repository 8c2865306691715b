/**
 * A new claim: who owns it (beyond the PID), and how it is found and recorded inside one
 * critical section.
 */
import { findFreeRun, isClaimLive, type OwnerCheck } from './search.js';
import { PortsExhaustedError } from '../base/errors.js';
import { currentPidNamespace } from '../base/proc.js';
import type { StartTime } from '../liveness/liveness.js';
import type { ResolvedClaimOptions } from '../options/options.js';
import { ensureOwnBeacon } from '../liveness/owner-beacon.js';
import { newClaimId } from '../base/process-state.js';
import type { SkippedPorts } from '../ports/skipped-ports.js';
import { readStickyMemory, rememberSticky } from '../store/sticky-memory.js';
import { type ClaimRecord, freezeRecord, type StateData } from '../store/format.js';
import type { ChangeOutcome } from '../store/transaction.js';

/** Ports a search passes over because their tokens are held elsewhere (see ports/port-tokens.ts). */
export interface HeldElsewhere {
  readonly ports: ReadonlySet<number>;
  /** How many of them lie from `base` to `max`, and who holds them, for the "exhausted" message. */
  describe(base: number, max: number): { ports: number; by: string[] };
}

/** The fields of a claim that identify its owner beyond the PID. */
export type OwnerFields = Pick<ClaimRecord, 'startTime' | 'pidNs' | 'beacon'>;

/** Whether a claim is one this thread gives back when it exits: its own process's, with no TTL. */
export function isReleasedAtExit(request: Pick<ResolvedClaimOptions, 'pid' | 'ttlMs'>): boolean {
  return request.pid === process.pid && request.ttlMs === undefined;
}

/**
 * What identifies the owner `pid` beyond its PID: its start time, its PID namespace, and a
 * beacon in `stateDir` when the owner is this process (only it can hold one for itself).
 */
export function ownerFields(stateDir: string, pid: number, startTime: StartTime): OwnerFields {
  const pidNs = currentPidNamespace();
  const beacon = pid === process.pid && pidNs !== undefined ? ensureOwnBeacon(stateDir) : undefined;
  return {
    ...(startTime === undefined ? {} : { startTime }),
    ...(pidNs === undefined ? {} : { pidNs }),
    ...(beacon === undefined ? {} : { beacon }),
  };
}

/** What one search for a new claim goes by. */
export interface ClaimSearch {
  readonly request: ResolvedClaimOptions;
  readonly owner: OwnerFields;
  /** Ports found busy by earlier probes of this claim. */
  readonly busy: ReadonlySet<number>;
  /** Ports found claimed elsewhere in the network namespace (their tokens held), and by whom. */
  readonly elsewhere?: HeldElsewhere | undefined;
  /** Ports never handed out (refreshed inside the lock by the caller). */
  readonly skipped: SkippedPorts;
  /** The owner check of this critical section. */
  readonly isAlive: OwnerCheck;
  /** For a sticky claim: the memory file, and the mode a new one gets. */
  readonly sticky?: { file: string; mode: number } | undefined;
}

/** Where a sticky claim's label held its ports last, if that run lies within `base`..`max`. */
function rememberedStart(request: ResolvedClaimOptions, file: string): number | undefined {
  const entry = readStickyMemory(file).find((remembered) => remembered.label === request.label);
  if (entry === undefined || entry.start < request.base || entry.start + request.count - 1 > request.max) return undefined;
  return entry.start;
}

/**
 * Inside the lock: drops `previous` (the tentative claim whose ports proved busy) and the
 * dead claims met on the way, finds the lowest free run and records a new claim for it,
 * under `id` (default: a new one).
 *
 * @throws {PortsExhaustedError} when no run fits.
 */
export function recordNewClaim(
  state: StateData,
  search: ClaimSearch,
  previous: ClaimRecord | undefined,
  id: string = newClaimId(),
): ChangeOutcome<ClaimRecord> {
  const { request, skipped, busy } = search;
  if (previous !== undefined) state.claims = state.claims.filter((claim) => claim.id !== previous.id);
  const now = Date.now();
  const elsewhere = search.elsewhere?.ports;
  const isSkipped = (port: number): boolean => skipped.has(port) || busy.has(port) || elsewhere?.has(port) === true;
  const isLive = (claim: ClaimRecord): boolean => isClaimLive(claim, now, search.isAlive);
  const sticky = search.sticky === undefined ? undefined : rememberedStart(request, search.sticky.file);
  // The remembered run alone first (a search from it that may not go past it), then the usual search.
  const remembered =
    sticky === undefined ? undefined : findFreeRun(state.claims, sticky, request.count, isSkipped, isLive, sticky + request.count - 1);
  const { start, dead } =
    remembered?.start !== undefined ? remembered : findFreeRun(state.claims, request.base, request.count, isSkipped, isLive, request.max);
  for (const claim of remembered?.dead ?? []) dead.add(claim);
  if (dead.size > 0) state.claims = state.claims.filter((claim) => !dead.has(claim));
  if (start === undefined) {
    throw new PortsExhaustedError(request.base, request.count, {
      skipped: ['claimed ports', ...skipped.describe(request.base, request.max)],
      max: request.max,
      busy: busy.size,
      host: request.host,
      elsewhere: search.elsewhere?.describe(request.base, request.max),
    });
  }
  const claim = freezeRecord({
    ...search.owner,
    id,
    start,
    count: request.count,
    host: request.host,
    pid: request.pid,
    createdAt: now,
    ...(request.ttlMs === undefined ? {} : { expiresAt: now + request.ttlMs }),
    ...(request.label === undefined ? {} : { label: request.label }),
  });
  state.claims.push(claim);
  if (search.sticky !== undefined) {
    rememberSticky(search.sticky.file, { label: request.label!, start, count: request.count, usedAt: now }, search.sticky.mode);
  }
  return { changed: true, result: claim };
}

/** Runs the search once over `claims`, finding nothing, so its code is warm before the lock is taken. */
export function warmUpSearch(claims: readonly ClaimRecord[]): void {
  findFreeRun(
    claims,
    1,
    1,
    () => false,
    () => true,
  );
}
