/**
 * A new claim: who owns it (beyond the PID), and how it is found and recorded inside one
 * critical section.
 */
import { findFreeRun, isClaimLive, type OwnerCheck } from './claims.js';
import { PortsExhaustedError } from './errors.js';
import { currentPidNamespace, type StartTime } from './liveness.js';
import type { ResolvedClaimOptions } from './options.js';
import { ensureOwnBeacon } from './owner-beacon.js';
import { newClaimId } from './process-state.js';
import type { SkippedPorts } from './skipped-ports.js';
import { type ClaimRecord, freezeRecord, type StateData } from './state-format.js';
import type { ChangeOutcome } from './transaction.js';

/** The fields of a claim that identify its owner beyond the PID. */
export type OwnerFields = Pick<ClaimRecord, 'startTime' | 'pidNs' | 'beacon'>;

const OWNER_KEYS: ReadonlySet<string> = new Set(['startTime', 'pidNs', 'beacon'] satisfies Array<keyof OwnerFields>);

/** Whether a claim is one this thread gives back when it exits: its own process's, with no TTL. */
export function isReleasedAtExit(request: Pick<ResolvedClaimOptions, 'pid' | 'ttlMs'>): boolean {
  return request.pid === process.pid && request.ttlMs === undefined;
}

/**
 * What identifies the owner `pid` beyond its PID: its start time, its PID namespace, and a
 * beacon in `stateDir` when the owner is this process (only it can hold one for itself).
 */
export function ownerFields(stateDir: string, sharedStateDir: boolean, pid: number, startTime: StartTime): OwnerFields {
  const pidNs = currentPidNamespace();
  const beacon = pid === process.pid && pidNs !== undefined ? ensureOwnBeacon(stateDir, sharedStateDir) : undefined;
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
  /** Ports never handed out (refreshed inside the lock by the caller). */
  readonly skipped: SkippedPorts;
  /** The owner check of this critical section. */
  readonly isAlive: OwnerCheck;
}

/**
 * Inside the lock: drops `previous` (the tentative claim whose ports proved busy) and the
 * dead claims met on the way, finds the lowest free run and records a new claim for it.
 *
 * @throws {PortsExhaustedError} when no run fits.
 */
export function recordNewClaim(state: StateData, search: ClaimSearch, previous: ClaimRecord | undefined): ChangeOutcome<ClaimRecord> {
  const { request, skipped, busy } = search;
  if (previous !== undefined) state.claims = state.claims.filter((claim) => claim.id !== previous.id);
  const now = Date.now();
  const { start, dead } = findFreeRun(
    state.claims,
    request.base,
    request.count,
    (port) => skipped.has(port) || busy.has(port),
    (claim) => isClaimLive(claim, now, search.isAlive),
    request.max,
  );
  if (dead.size > 0) state.claims = state.claims.filter((claim) => !dead.has(claim));
  if (start === undefined) {
    throw new PortsExhaustedError(request.base, request.count, {
      skipped: ['claimed ports', ...skipped.describe(request.base, request.max)],
      max: request.max,
      busy: busy.size,
      host: request.host,
    });
  }
  const claim = freezeRecord({
    id: newClaimId(),
    start,
    count: request.count,
    host: request.host,
    pid: request.pid,
    ...search.owner,
    createdAt: now,
    ...(request.ttlMs === undefined ? {} : { expiresAt: now + request.ttlMs }),
    ...(request.label === undefined ? {} : { label: request.label }),
  });
  state.claims.push(claim);
  return { changed: true, result: claim };
}

/**
 * Inside the lock: gives the claims `match` picks to the owner `pid`, keeping their id,
 * ports, label and TTL. The result is how many changed owner.
 */
export function reassignClaims(
  state: StateData,
  match: (claim: ClaimRecord) => boolean,
  pid: number,
  owner: OwnerFields,
): ChangeOutcome<number> {
  let changed = 0;
  state.claims = state.claims.map((claim) => {
    if (!match(claim)) return claim;
    changed++;
    // The old owner's start time, namespace and beacon describe another process.
    const kept = Object.entries(claim).filter(([key]) => !OWNER_KEYS.has(key));
    return freezeRecord({ ...(Object.fromEntries(kept) as Omit<ClaimRecord, keyof OwnerFields>), pid, ...owner });
  });
  return { changed: changed > 0, result: changed };
}
