/**
 * The holder's side of the claim queue: inside each critical section, the lock holder records
 * the claims queued by processes waiting on it exactly as their owners would have (same
 * options, same owner, same skipped ports); after each release, it wakes the oldest waiters.
 */
import type { OwnerCheck } from '../claims/search.js';
import { recordNewClaim } from '../claims/new-claim.js';
import { OwnerLiveness } from '../liveness/owner-liveness.js';
import { FOREIGN_OWNER_MAX_AGE_MS } from '../liveness/liveness.js';
import { currentNetworkNamespace } from '../base/proc.js';
import type { ResolvedClaimOptions } from '../options/option-types.js';
import { SkipRuleSetCache, watchedOpens, SkippedPorts } from '../ports/skipped-ports.js';
import type { SocketTable } from '../ports/socket-table.js';
import type { StateData } from '../store/format.js';
import type { QueueService } from '../store/transaction.js';
import type { ClaimQueue, QueuedFile } from './queue-dir.js';
import { BREAK_MARGIN_MS, parseRequest, type QueuedRequest } from './request.js';
import { debugLetGo } from '../base/debug.js';

/** What a holder needs to record others' claims as they would. */
export interface QueueServerContext {
  /** The holder's socket table, if its allocator uses one. */
  socketTable: SocketTable | undefined;
  /** A fresh owner check for one critical section. */
  ownerCheck: () => OwnerCheck;
}

const NO_BUSY_PORTS: ReadonlySet<number> = new Set();

/**
 * The holder's side: inside each critical section, records the claims queued by processes
 * waiting on the lock; after each release, wakes the oldest one still waiting.
 */
export class QueueServer implements QueueService {
  private readonly queue: ClaimQueue;
  private readonly context: QueueServerContext;
  private readonly skipRuleSets = new SkipRuleSetCache(undefined);
  private readonly netns = currentNetworkNamespace() ?? null;

  constructor(queue: ClaimQueue, context: QueueServerContext) {
    this.queue = queue;
    this.context = context;
  }

  serve(state: StateData): { changed: boolean; settle: () => void } | undefined {
    const files = this.queue.pending();
    if (files.length === 0) return undefined;
    const ownerCheck = this.context.ownerCheck();
    // An owner in another PID namespace whose beacon this holder has not probed is not guessed
    // dead by its age for someone else's claim: the requester, which probed it, might not have.
    const isAlive: OwnerCheck = (claim, ageMs) =>
      ownerCheck(claim, OwnerLiveness.isForeign(claim) ? Math.min(ageMs, FOREIGN_OWNER_MAX_AGE_MS - 1) : ageMs);
    const recorded = new Set(state.claims.map((claim) => claim.id));
    const now = Date.now();
    let changed = false;
    for (const file of files) {
      const parsed = parseRequest(file.body);
      // Settled without a claim, its owner takes the lock itself: a request this holder cannot
      // read, one whose owner could not break this lock in time should this holder stall now,
      // one recorded already (by a holder that paused before removing it), and one whose owner
      // sees other sockets.
      if (parsed === undefined || parsed.request.until - now < parsed.request.breakAfterMs + BREAK_MARGIN_MS) continue;
      if (recorded.has(parsed.request.id)) continue;
      const skipped = this.skippedPorts(parsed.request, parsed.options);
      if (skipped === undefined) continue;
      try {
        const search = { request: parsed.options, owner: parsed.request.owner, busy: NO_BUSY_PORTS, skipped, isAlive };
        recordNewClaim(state, search, undefined, parsed.request.id);
        recorded.add(parsed.request.id);
        changed = true;
      } catch (error) {
        // No run fits: its owner searches again itself, and gets the error from its own search.
        debugLetGo('queue/holder', error);
      }
    }
    return { changed, settle: () => this.queue.settle(files as readonly QueuedFile[]) };
  }

  nudge(): void {
    this.queue.nudgeOldest();
  }

  /** The ports the owner of `request` would skip, or `undefined` if this holder cannot tell them. */
  private skippedPorts(request: QueuedRequest, options: ResolvedClaimOptions): SkippedPorts | undefined {
    // The ephemeral and reserved ranges, and the sockets, are those of a network namespace:
    // on Linux both must be known, elsewhere there is one.
    if (request.netns !== this.netns || (process.platform === 'linux' && this.netns === null)) return undefined;
    const ephemeralPortRange = request.ephemeralPortRange ?? undefined;
    const rules = this.skipRuleSets.for(options, ephemeralPortRange);
    if (options.protocol === 'udp' || !request.socketTable) return new SkippedPorts(rules, undefined, 'passive');
    if (this.context.socketTable === undefined) return undefined;
    const skipped = new SkippedPorts(rules, this.context.socketTable, watchedOpens(options, ephemeralPortRange));
    skipped.refreshInsideLock();
    return skipped;
  }
}
