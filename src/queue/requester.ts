/**
 * The requester's side of the claim queue: a process that finds the lock busy leaves its
 * request and waits for the holder to record it, rather than for a turn at the lock. Its
 * owner still probes the ports itself.
 */
import type { OwnerCheck } from '../claims/search.js';
import type { ClaimSearch } from '../claims/new-claim.js';
import { recordNewClaim } from '../claims/new-claim.js';
import { newClaimId } from '../base/process-state.js';
import type { PortRange } from '../base/port-numbers.js';
import type { ClaimRecord } from '../store/format.js';
import type { StateChange, StateTransactions } from '../store/transaction.js';
import type { LockWaiter } from '../store/lock.js';
import { pausePoint } from '../base/pause-points.js';
import type { ClaimQueue, QueueTicket } from './queue-dir.js';
import { BREAK_MARGIN_MS, queuedRequest } from './request.js';
import { debugLetGo } from '../base/debug.js';

/** What {@link recordFirstClaim} needs of its allocator. */
export interface QueueingContext {
  transactions: StateTransactions;
  queue: ClaimQueue;
  /** A fresh owner check for one critical section. */
  ownerCheck: () => OwnerCheck;
  settings: { ephemeralPortRange: PortRange | undefined; socketTable: boolean; lockTimeoutMs: number; staleMs: number };
}

/**
 * Records the first claim of a search. Where the lock is busy, the request waits in the queue
 * for the holder to record it, rather than for a turn at the lock; the id is chosen first, so
 * the claim is found however it was recorded, and recorded only once. Its id joins
 * `releasedAtExit` before it is queued: a holder may record it at any moment from then on.
 * The whole wait, queued or not, ends within the allocator's lock timeout.
 */
export async function recordFirstClaim(
  context: QueueingContext,
  search: Omit<ClaimSearch, 'isAlive'>,
  releasedAtExit: Set<string> | undefined,
): Promise<ClaimRecord> {
  const { transactions, settings } = context;
  const deadline = performance.now() + settings.lockTimeoutMs;
  const id = newClaimId();
  releasedAtExit?.add(id);
  const { request, owner } = search;
  const waiter = new QueueWaiter(context.queue, id, (remainingMs) =>
    // Too little time left to break a stalled holder's lock: waiting for its write would be
    // a bet on its liveness, so this process only takes the lock itself.
    remainingMs < settings.staleMs + BREAK_MARGIN_MS
      ? undefined
      : queuedRequest({
          id,
          request,
          owner,
          ephemeralPortRange: settings.ephemeralPortRange,
          socketTable: settings.socketTable,
          until: Date.now() + remainingMs,
          breakAfterMs: settings.staleMs,
        }),
  );
  const isOurs = (claim: ClaimRecord): boolean => claim.id === id && claim.pid === request.pid;
  const record: StateChange<ClaimRecord> = (state) => {
    // A holder that paused before removing the request may have recorded it already.
    const recorded = state.claims.find(isOurs);
    if (recorded !== undefined) return { changed: false, result: recorded };
    waiter.withdraw();
    search.skipped.refreshInsideLock();
    return recordNewClaim(state, { ...search, isAlive: context.ownerCheck() }, undefined, id);
  };
  const recorded = (): ClaimRecord | undefined => transactions.read().claims.find(isOurs);
  try {
    const own = await transactions.runUnlessServed(record, { waiter });
    if (own !== undefined) return own.result;
    // Settled by a holder: recorded, or left to this process (it could not tell this
    // process's sockets, or found no room, which this process's own search then reports).
    return recorded() ?? (await transactions.run(record, { timeoutMs: Math.max(0, deadline - performance.now()) }));
  } catch (error) {
    // Given up, but perhaps served meanwhile: a claim made is not thrown away.
    waiter.withdraw();
    let served: ClaimRecord | undefined;
    try {
      served = recorded();
    } catch (error) {
      // The first error says more.
      debugLetGo('queue/requester', error);
    }
    if (served === undefined) throw error;
    return served;
  } finally {
    waiter.withdraw();
  }
}

// A queued waiter retries the lock on its own this often (randomized ±50 %), for holders that
// crash, or that wake nobody (another version of portlease sharing the directory).
const FALLBACK_RETRY_MS = 40;

/**
 * Waits for the lock as a queued request: the request is written at the first wait (a process
 * that finds the lock free never writes one), then each wait lasts until a holder settles or
 * nudges it, or the fallback retry. Once withdrawn, it waits as any other lock waiter.
 */
class QueueWaiter implements LockWaiter {
  private readonly queue: ClaimQueue;
  private readonly name: string;
  private readonly body: (remainingMs: number) => unknown;
  private ticket: QueueTicket | null | undefined;

  /** @param body - the request, made only if it is queued, given how long its owner still waits. */
  constructor(queue: ClaimQueue, name: string, body: (remainingMs: number) => unknown) {
    this.queue = queue;
    this.name = name;
    this.body = body;
  }

  get done(): boolean {
    return this.ticket?.settled ?? false;
  }

  wait(remainingMs: number): Promise<void> | undefined {
    if (this.ticket === undefined) {
      const body = this.body(remainingMs);
      this.ticket = body === undefined ? null : (this.queue.enqueue(this.name, body) ?? null);
      if (this.ticket !== null) pausePoint('queued');
    }
    if (this.ticket === null || this.ticket.isWithdrawn) return undefined;
    return this.ticket.wait(Math.min(remainingMs, FALLBACK_RETRY_MS * (0.5 + Math.random())));
  }

  /** Takes the request back if it was queued (idempotent). */
  withdraw(): void {
    this.ticket?.withdraw();
  }
}
