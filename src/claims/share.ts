/**
 * Sharing a claim with a second owner: a copy of the record under a new id and the new
 * owner's PID, so the ports stay claimed while either owner lives. For a supervisor
 * (`portlease exec`) whose command may exit while processes it started still use the ports.
 */
import { OwnerNotAliveError } from '../base/errors.js';
import { OwnerLiveness } from '../liveness/owner-liveness.js';
import { currentStartTime, readStartTime } from '../liveness/liveness.js';
import { newClaimId } from '../base/process-state.js';
import { type ClaimRecord, freezeRecord, type StateData } from '../store/format.js';
import type { ChangeOutcome } from '../store/transaction.js';
import { type OwnerFields, ownerFields } from './new-claim.js';
import { claimedPorts, toPortSet } from './search.js';

const OWNER_KEYS: ReadonlySet<string> = new Set(['startTime', 'pidNs', 'beacon'] satisfies Array<keyof OwnerFields>);

/**
 * Inside the lock: adds, for each claim `match` picks, a copy owned by `pid` (a new id, the
 * same ports, label and TTL). The result maps the id of each claim shared to its copy.
 */
export function shareClaims(
  state: StateData,
  match: (claim: ClaimRecord) => boolean,
  pid: number,
  owner: OwnerFields,
): ChangeOutcome<Map<string, ClaimRecord>> {
  const copies = new Map<string, ClaimRecord>();
  for (const claim of state.claims) {
    if (!match(claim)) continue;
    // The first owner's start time, namespace and beacon describe another process.
    const kept = Object.entries(claim).filter(([key]) => !OWNER_KEYS.has(key));
    const fields = Object.fromEntries(kept) as Omit<ClaimRecord, keyof OwnerFields>;
    copies.set(claim.id, freezeRecord({ ...fields, id: newClaimId(), pid, ...owner }));
  }
  state.claims.push(...copies.values());
  return { changed: copies.size > 0, result: copies };
}

/**
 * The change that gives the live process `to` a copy of each claim of `from` that holds any
 * of `ports`, for one transaction. Checks `to` first, before any lock is taken.
 *
 * @throws {OwnerNotAliveError} when `to` is not running.
 */
export function shareChange(
  stateDir: string,
  ports: number | readonly number[],
  from: number,
  to: number,
): (state: StateData) => ChangeOutcome<Map<string, ClaimRecord>> {
  const wanted = toPortSet(ports)!;
  const startTime = to === process.pid ? currentStartTime() : readStartTime(to);
  if (startTime === null) throw new OwnerNotAliveError(to);
  const owner = ownerFields(stateDir, to, startTime);
  const holds = (claim: ClaimRecord): boolean => claimedPorts(claim).some((port) => wanted.has(port));
  // A PID names a process of this PID namespace only.
  const match = (claim: ClaimRecord): boolean => claim.pid === from && !OwnerLiveness.isForeign(claim) && holds(claim);
  return (state) => shareClaims(state, match, to, owner);
}
