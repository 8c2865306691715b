/**
 * Claims recorded by the lock holder for processes waiting on it: what a waiting process
 * leaves in the claim queue, and how a holder records it exactly as its owner would have
 * (same options, same owner, same skipped ports). Its owner still probes the ports itself.
 */
import type { OwnerCheck } from '../claims/claims.js';
import { type ClaimQueue, type QueuedFile, QueueWaiter } from './claim-queue.js';
import { OwnerLiveness } from '../liveness/foreign-owners.js';
import { FOREIGN_OWNER_MAX_AGE_MS } from '../liveness/liveness.js';
import { type ClaimSearch, type OwnerFields, recordNewClaim } from '../claims/new-claim.js';
import { newClaimId } from '../base/process-state.js';
import { resolveClaimOptions } from '../options/options.js';
import type { ResolvedClaimOptions } from '../options/option-types.js';
import { BlockedPortsCache, opensThatMatter, SkippedPorts } from '../ports/skipped-ports.js';
import type { SocketTable } from '../ports/socket-table.js';
import { currentNetworkNamespace } from '../base/proc.js';
import { isPortRange, type PortRange } from '../base/port-numbers.js';
import type { ClaimRecord, StateData } from '../store/state-format.js';
import type { QueueService, StateChange, StateTransactions } from '../store/transaction.js';

const REQUEST_VERSION = 1;
const MAX_OWNER_FIELD_LENGTH = 200;

/** A claim request as it waits in the queue. */
export interface QueuedRequest {
  v: typeof REQUEST_VERSION;
  /** The id the claim is recorded under: its owner finds it by this id. */
  id: string;
  /** After this instant (ms since the epoch) its owner has stopped waiting: it is not served. */
  until: number;
  /**
   * After how long its owner breaks a lock it sees unchanged. A holder serves the request only
   * if its owner could still break the holder's lock before `until`, should the holder stall
   * after recording it: the owner then records its own claim and the stalled write is void,
   * rather than the owner giving up while a claim is being made for it.
   */
  breakAfterMs: number;
  /** The claim options, resolved by the owner (never sticky: those take the lock themselves). */
  options: Omit<ResolvedClaimOptions, 'sticky' | 'label' | 'ttlMs'> & { label?: string; ttlMs?: number };
  /** The owner allocator's `ephemeralPortRange` setting; `null` for the system's range. */
  ephemeralPortRange: PortRange | null;
  /** Whether the owner skips ports its socket table shows in use. */
  socketTable: boolean;
  owner: OwnerFields;
  /** The owner's network namespace: only a holder in the same one sees the same sockets. */
  netns: string | null;
}

/** What {@link recordFirstClaim} needs of its allocator. */
export interface QueueingContext {
  transactions: StateTransactions;
  queue: ClaimQueue;
  /** A fresh owner check for one critical section. */
  ownerCheck: () => OwnerCheck;
  settings: { ephemeralPortRange: PortRange | undefined; socketTable: boolean; lockTimeoutMs: number; staleMs: number };
}

// A holder serves a request only while its owner has this long to spare beyond breaking the
// holder's lock (see QueuedRequest.breakAfterMs).
const BREAK_MARGIN_MS = 1000;

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
    const own = await transactions.runUnless(record, { waiter });
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
    } catch {
      // The first error says more.
    }
    if (served === undefined) throw error;
    return served;
  } finally {
    waiter.withdraw();
  }
}

/** What the owner of a claim request says about itself and its allocator. */
export interface RequestContext {
  id: string;
  request: ResolvedClaimOptions;
  owner: OwnerFields;
  ephemeralPortRange: PortRange | undefined;
  socketTable: boolean;
  /** When the owner stops waiting (ms since the epoch). */
  until: number;
  /** After how long its owner breaks a lock it sees unchanged (its `staleMs`). */
  breakAfterMs: number;
}

/** The request to queue for a claim. */
export function queuedRequest(context: RequestContext): QueuedRequest {
  const { base, count, host, label, pid, ttlMs, protocol, exclude, allowEphemeralPorts, allowUnsafePorts, allowReservedPorts, max } =
    context.request;
  const options = { base, count, host, pid, protocol, exclude, allowEphemeralPorts, allowUnsafePorts, allowReservedPorts, max };
  return {
    v: REQUEST_VERSION,
    id: context.id,
    until: context.until,
    breakAfterMs: context.breakAfterMs,
    options: { ...options, ...(label === undefined ? {} : { label }), ...(ttlMs === undefined ? {} : { ttlMs }) },
    ephemeralPortRange: context.ephemeralPortRange ?? null,
    socketTable: context.socketTable,
    owner: context.owner,
    netns: currentNetworkNamespace() ?? null,
  };
}

function isOptionalShortString(value: unknown): boolean {
  return value === undefined || (typeof value === 'string' && value.length <= MAX_OWNER_FIELD_LENGTH);
}

/** A checked request, or `undefined` for anything else (another version's, damaged, planted). */
function parseRequest(body: unknown): { request: QueuedRequest; options: ResolvedClaimOptions } | undefined {
  const value = body as Partial<QueuedRequest> | null;
  if (typeof value !== 'object' || value === null || value.v !== REQUEST_VERSION) return undefined;
  if (typeof value.id !== 'string' || !/^[\w.-]{1,100}$/.test(value.id) || typeof value.until !== 'number') return undefined;
  if (typeof value.socketTable !== 'boolean' || !(value.netns === null || typeof value.netns === 'string')) return undefined;
  if (!(value.ephemeralPortRange === null || isPortRange(value.ephemeralPortRange))) return undefined;
  if (typeof value.breakAfterMs !== 'number' || !(value.breakAfterMs >= 0)) return undefined;
  const owner = value.owner as Record<string, unknown> | null | undefined;
  if (typeof owner !== 'object' || owner === null) return undefined;
  const { startTime, pidNs, beacon } = owner;
  if (!isOptionalShortString(startTime) || !isOptionalShortString(pidNs) || !isOptionalShortString(beacon)) return undefined;
  if (typeof value.options !== 'object' || value.options === null || typeof value.options.pid !== 'number') return undefined;
  let options: ResolvedClaimOptions;
  try {
    options = resolveClaimOptions({ ...value.options, sticky: false });
  } catch {
    return undefined;
  }
  // Only the owner fields, whatever else the file holds: nothing in it may set the claim's own fields.
  const ownerFields = {
    ...(startTime === undefined ? {} : { startTime: startTime as string }),
    ...(pidNs === undefined ? {} : { pidNs: pidNs as string }),
    ...(beacon === undefined ? {} : { beacon: beacon as string }),
  };
  return { request: { ...(value as QueuedRequest), owner: ownerFields }, options };
}

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
  private readonly blockedPorts = new BlockedPortsCache(undefined);
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
      } catch {
        // No run fits: its owner searches again itself, and gets the error from its own search.
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
    const rules = this.blockedPorts.for(options, ephemeralPortRange);
    if (options.protocol === 'udp' || !request.socketTable) return new SkippedPorts(rules, undefined, 'passive');
    if (this.context.socketTable === undefined) return undefined;
    const skipped = new SkippedPorts(rules, this.context.socketTable, opensThatMatter(options, ephemeralPortRange));
    skipped.refreshInsideLock();
    return skipped;
  }
}
