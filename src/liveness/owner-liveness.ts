import { currentPidNamespace } from '../base/proc.js';
import { FOREIGN_OWNER_MAX_AGE_MS, isOwnerAlive } from './liveness.js';
import { type BeaconState, probeBeacons } from './beacon-probe.js';
import type { ClaimRecord } from '../store/format.js';

// A beacon found alive is probed again after this long, when a claim runs into it again.
const ALIVE_VERDICT_MS = 1000;

/**
 * Liveness of every claim's owner, as seen from this process. Within this PID namespace the
 * PID says it (with the start time). A claim from another namespace names a PID this
 * process cannot see, or worse, one that belongs to another process here: it is judged by
 * its owner's beacon (a Unix socket the owner holds, which the kernel closes when it dies),
 * else kept until {@link FOREIGN_OWNER_MAX_AGE_MS}. It is never reaped as dead by a process
 * that cannot see its owner.
 *
 * Beacons are probed asynchronously before the lock ({@link refresh}); under the lock only
 * the verdicts are read. A verdict of "dead" is final; "alive" is probed again later.
 */
export class OwnerLiveness {
  private readonly dir: string;
  private readonly verdicts = new Map<string, { state: BeaconState; at: number }>();
  /** Beacons of foreign claims met under the lock that want a (fresh) probe. */
  private readonly wanted = new Set<string>();

  /** @param dir - the state directory, where beacons live. */
  constructor(dir: string) {
    this.dir = dir;
  }

  /** Whether `claim`'s PID belongs to another PID namespace than this process's. */
  static isForeign(claim: ClaimRecord): boolean {
    // Where this process cannot read its own namespace (/proc hidden), a claim that names one
    // may still come from another: never judge it by a PID that may not be its owner's.
    return claim.pidNs !== undefined && claim.pidNs !== currentPidNamespace();
  }

  /**
   * Probes the beacons a search wanted last time and those of the foreign claims in
   * `claims` (a read made before the lock); with `fresh`, also those found alive a moment
   * ago (for `reap` and `list`, which are asked for now). Cheap when there are none: no I/O.
   */
  async refresh(claims: Iterable<ClaimRecord> = [], options: { fresh?: boolean } = {}): Promise<void> {
    for (const claim of claims)
      if (claim.beacon !== undefined && OwnerLiveness.isForeign(claim)) this.want(claim.beacon, options.fresh === true);
    if (this.wanted.size === 0) return;
    const names = [...this.wanted];
    this.wanted.clear();
    const probed = await probeBeacons(this.dir, names);
    const at = performance.now();
    for (const [name, state] of probed) this.verdicts.set(name, { state, at });
  }

  /** Whether the owner of `claim`, made `ageMs` ago, still runs. Synchronous: for the search under the lock. */
  isAlive(claim: ClaimRecord, ageMs: number): boolean {
    if (!OwnerLiveness.isForeign(claim)) return isOwnerAlive(claim.pid, claim.startTime, ageMs);
    if (claim.beacon !== undefined) {
      const verdict = this.verdicts.get(claim.beacon);
      if (verdict?.state === 'dead') return false;
      this.want(claim.beacon);
      if (verdict?.state === 'alive') return true;
    }
    return ageMs < FOREIGN_OWNER_MAX_AGE_MS;
  }

  private want(beacon: string, fresh = false): void {
    const verdict = this.verdicts.get(beacon);
    if (verdict?.state === 'dead') return;
    if (!fresh && verdict?.state === 'alive' && performance.now() - verdict.at < ALIVE_VERDICT_MS) return;
    this.wanted.add(beacon);
  }
}
