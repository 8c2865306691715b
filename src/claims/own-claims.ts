/**
 * The claims one allocator made for its own process: what a bare `release()` and the exit
 * of the process give back, and the tentative claims a failed search drops.
 */
import { claimsReleasedAtExit } from '../base/process-state.js';
import type { ResolvedClaimOptions } from '../options/options.js';
import { type ClaimRecord, freezeRecord, type StateData } from '../store/format.js';
import type { ChangeOutcome, StateTransactions } from '../store/transaction.js';
import type { ClaimTokens } from './claim-tokens.js';
import { toLease, type Lease } from './lease.js';
import { isReleasedAtExit } from './new-claim.js';
import { claimedPorts, removePorts, type RemovedPorts } from './search.js';
import { debugLetGo } from '../base/debug.js';

/** Drops the claims `drop` picks: one change whose result is how many went. */
export function dropWhere(state: StateData, drop: (claim: ClaimRecord) => boolean): ChangeOutcome<number> {
  const before = state.claims.length;
  state.claims = state.claims.filter((claim) => !drop(claim));
  const dropped = before - state.claims.length;
  return { changed: dropped > 0, result: dropped };
}

/** Removes the ports `matches` picks (all of each claim without `ports`): the released ports, and what went of each claim. */
export function releasePorts(
  state: StateData,
  matches: (claim: ClaimRecord) => boolean,
  ports: ReadonlySet<number> | undefined,
): ChangeOutcome<{ released: number[]; removed: RemovedPorts[] }> {
  const { kept, released, removed } = removePorts(state.claims, matches, ports);
  if (released.length > 0) state.claims = kept.map(freezeRecord);
  return { changed: released.length > 0, result: { released, removed } };
}

/** Removes every record of the claims `ids` names: the released ports, and what went (each claim whole). */
export function releaseClaims(state: StateData, ids: ReadonlySet<string>): ChangeOutcome<{ released: number[]; removed: RemovedPorts[] }> {
  const released: number[] = [];
  const removed: RemovedPorts[] = [];
  state.claims = state.claims.filter((claim) => {
    if (!ids.has(claim.id)) return true;
    const ports = claimedPorts(claim);
    released.push(...ports);
    removed.push({ id: claim.id, ports, whole: true });
    return false;
  });
  return { changed: removed.length > 0, result: { released, removed } };
}

/** The claims of one allocator instance, for this process. */
export class OwnClaims {
  private readonly transactions: StateTransactions;
  private readonly tokens: ClaimTokens;
  private readonly stateFile: string;
  /** Ids of the claims this instance made for this process and has not given back. */
  private readonly ids = new Set<string>();
  private readonly leaseIds = new WeakMap<Lease, string>();

  constructor(transactions: StateTransactions, tokens: ClaimTokens, stateFile: string) {
    this.transactions = transactions;
    this.tokens = tokens;
    this.stateFile = stateFile;
  }

  /**
   * Where the exit handler keeps the ids of `request`'s claims, if they are given back at exit
   * (this process's own, with no TTL). The caller adds each tentative claim as soon as it is
   * recorded, so that an exit while it is probed still finds it.
   */
  exitSet(request: ResolvedClaimOptions): Set<string> | undefined {
    return isReleasedAtExit(request) ? this.releasedAtExit() : undefined;
  }

  /** The lease of a claim that passed its probe; remembered for a bare release if it is this process's. */
  handOut(claim: ClaimRecord, releasedAtExit: Set<string> | undefined): Lease {
    const id = claim.id;
    releasedAtExit?.add(id);
    if (claim.pid === process.pid) this.ids.add(id);
    const lease = toLease(claim, () => this.release(new Set([id])).then(() => undefined));
    this.leaseIds.set(lease, id);
    return lease;
  }

  /** Gives back every claim this instance made for this process and still holds. */
  releaseAll(): Promise<number[]> {
    return this.release(new Set(this.ids));
  }

  /** Gives back the claims of `leases` that this instance handed out, in one change. */
  releaseLeases(leases: Iterable<Lease>): Promise<number[]> {
    const ids = new Set<string>();
    for (const lease of leases) {
      const id = this.leaseIds.get(lease);
      if (id !== undefined) ids.add(id);
    }
    return this.release(ids);
  }

  /** Drops a tentative claim after a failure; a failure here must not hide the first one. */
  async dropQuietly(id: string): Promise<void> {
    try {
      await this.release(new Set([id]));
    } catch (error) {
      // The claim stays until its owner exits and it is reaped.
      debugLetGo('claims/own-claims', error);
    }
  }

  /** Gives back the claims with these ids, in one change, and then their tokens. */
  private async release(ids: ReadonlySet<string>): Promise<number[]> {
    if (ids.size === 0) return [];
    const { released, removed } = await this.transactions.run((state) => releaseClaims(state, ids));
    // Forgotten by the exit handler only once given back: a release that failed (a lock
    // timeout) is tried again at exit.
    this.forget(ids);
    const stopping = this.tokens.letGo(removed);
    if (stopping !== undefined) await stopping;
    return released;
  }

  private forget(ids: Iterable<string>): void {
    const releasedAtExit = this.releasedAtExit();
    for (const id of ids) {
      this.ids.delete(id);
      releasedAtExit.delete(id);
    }
  }

  private releasedAtExit(): Set<string> {
    return claimsReleasedAtExit(this.stateFile, (ids) => this.releaseAtExit(ids));
  }

  /**
   * At exit (of the process, or of this worker thread), gives back the claims this thread
   * made for itself if the lock is free right now; otherwise they are reaped once this PID
   * is gone. Their tokens go with the process (or the thread's sockets).
   */
  private releaseAtExit(ids: ReadonlySet<string>): void {
    this.transactions.runNowIfFree((state) => dropWhere(state, (claim) => claim.pid === process.pid && ids.has(claim.id)));
  }
}
