/**
 * The claims one allocator made for its own process: what a bare `release()` and the exit
 * of the process give back, and the tentative claims a failed search drops.
 */
import { removePorts } from './search.js';
import { toLease, type Lease } from './lease.js';
import { isReleasedAtExit } from './new-claim.js';
import type { ResolvedClaimOptions } from '../options/options.js';
import { claimsReleasedAtExit } from '../base/process-state.js';
import { type ClaimRecord, freezeRecord, type StateData } from '../store/format.js';
import type { ChangeOutcome, StateTransactions } from '../store/transaction.js';

/** Drops the claims `drop` picks: one change whose result is how many went. */
export function dropWhere(state: StateData, drop: (claim: ClaimRecord) => boolean): ChangeOutcome<number> {
  const before = state.claims.length;
  state.claims = state.claims.filter((claim) => !drop(claim));
  const dropped = before - state.claims.length;
  return { changed: dropped > 0, result: dropped };
}

/** The claims of one allocator instance, for this process. */
export class OwnClaims {
  private readonly transactions: StateTransactions;
  private readonly stateFile: string;
  /** Ids of the claims this instance made for this process and has not given back. */
  private readonly ids = new Set<string>();
  private readonly leaseIds = new WeakMap<Lease, string>();

  constructor(transactions: StateTransactions, stateFile: string) {
    this.transactions = transactions;
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
    const lease = toLease(claim, () => this.drop(id));
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
      await this.drop(id);
    } catch {
      // The claim stays until its owner exits and it is reaped.
    }
  }

  private async drop(id: string): Promise<void> {
    // Forgotten by the exit handler too, so a long-running process does not pile up ids.
    this.forget([id]);
    await this.transactions.run((state) => dropWhere(state, (claim) => claim.id === id));
  }

  /** Gives back this process's claims with these ids, in one change. */
  private async release(ids: ReadonlySet<string>): Promise<number[]> {
    if (ids.size === 0) return [];
    const released = await this.transactions.run((state) => {
      const { kept, released } = removePorts(state.claims, (claim) => claim.pid === process.pid && ids.has(claim.id), undefined);
      if (released.length > 0) state.claims = kept.map(freezeRecord);
      return { changed: released.length > 0, result: released };
    });
    this.forget(ids);
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
   * is gone.
   */
  private releaseAtExit(ids: ReadonlySet<string>): void {
    this.transactions.runNowIfFree((state) => dropWhere(state, (claim) => claim.pid === process.pid && ids.has(claim.id)));
  }
}
