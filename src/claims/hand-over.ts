/**
 * Handing a claim to another owner: the same ports, id, label and TTL under a new PID, for a
 * supervisor whose command exits while processes it started still use the ports.
 */
import { claimedPorts, toPortSet } from './search.js';
import { OwnerNotAliveError } from '../base/errors.js';
import { OwnerLiveness } from '../liveness/owner-liveness.js';
import { currentStartTime, readStartTime } from '../liveness/liveness.js';
import { type OwnerFields, ownerFields } from './new-claim.js';
import { newClaimId } from '../base/process-state.js';
import { type ClaimRecord, freezeRecord, type StateData } from '../store/format.js';
import type { ChangeOutcome } from '../store/transaction.js';

const OWNER_KEYS: ReadonlySet<string> = new Set(['startTime', 'pidNs', 'beacon'] satisfies Array<keyof OwnerFields>);

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

/**
 * Inside the lock: adds, for each claim `match` picks, a copy owned by `pid` (a new id, the
 * same ports, label and TTL), so the ports stay claimed while either owner lives. The
 * result is how many claims were copied.
 */
export function shareClaims(
  state: StateData,
  match: (claim: ClaimRecord) => boolean,
  pid: number,
  owner: OwnerFields,
): ChangeOutcome<number> {
  const copies: StateData = { claims: state.claims.filter(match) };
  if (copies.claims.length === 0) return { changed: false, result: 0 };
  reassignClaims(copies, () => true, pid, owner);
  state.claims.push(...copies.claims.map((claim) => freezeRecord({ ...claim, id: newClaimId() })));
  return { changed: true, result: copies.claims.length };
}

/**
 * The change that hands the claims of `from` holding any of `ports` to `to` (or, with
 * `keep`, gives `to` a copy of each, see {@link shareClaims}), for one transaction. Checks
 * `to` first, before any lock is taken.
 *
 * @throws {OwnerNotAliveError} when `to` is not running.
 */
export function handOverChange(
  stateDir: string,
  shared: boolean,
  ports: number | readonly number[],
  from: number,
  to: number,
  keep = false,
): (state: StateData) => ChangeOutcome<number> {
  const wanted = toPortSet(ports)!;
  const startTime = to === process.pid ? currentStartTime() : readStartTime(to);
  if (startTime === null) throw new OwnerNotAliveError(to);
  const owner = ownerFields(stateDir, shared, to, startTime);
  const holds = (claim: ClaimRecord): boolean => claimedPorts(claim).some((port) => wanted.has(port));
  // A PID names a process of this PID namespace only.
  const match = (claim: ClaimRecord): boolean => claim.pid === from && !OwnerLiveness.isForeign(claim) && holds(claim);
  return (state) => (keep ? shareClaims(state, match, to, owner) : reassignClaims(state, match, to, owner));
}
