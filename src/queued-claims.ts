/**
 * Claims recorded by the lock holder for processes waiting on it: what a waiting process
 * leaves in the claim queue, and how a holder records it exactly as its owner would have
 * (same options, same owner, same skipped ports). Its owner still probes the ports itself.
 */
import type { OwnerCheck } from './claims.js';
import { type ClaimQueue, type QueuedFile, QueueWaiter } from './claim-queue.js';
import { LockTimeoutError } from './errors.js';
import { type ClaimSearch, type OwnerFields, recordNewClaim } from './new-claim.js';
import { newClaimId } from './process-state.js';
import { resolveClaimOptions } from './options.js';
import type { ResolvedClaimOptions } from './option-types.js';
import type { PortRange } from './port-ranges.js';
import { BlockedPortsCache, opensThatMatter, SkippedPorts } from './skipped-ports.js';
import { currentNetworkNamespace, type SocketTable } from './socket-table.js';
import type { ClaimRecord, StateData } from './state-format.js';
import type { QueueService, StateChange, StateTransactions } from './transaction.js';

const REQUEST_VERSION = 1;
const MAX_OWNER_FIELD_LENGTH = 200;

/** A claim request as it waits in the queue. */
export interface QueuedRequest {
  v: typeof REQUEST_VERSION;
  /** The id the claim is recorded under: its owner finds it by this id. */
  id: string;
  /** After this instant (ms since the epoch) its owner has stopped waiting: it is not served. */
  until: number;
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
  settings: { ephemeralPortRange: PortRange | undefined; socketTable: boolean; lockTimeoutMs: number };
}

/**
 * Records the first claim of a search. Where the lock is busy, the request waits in the queue
 * for the holder to record it, rather than for a turn at the lock; the id is chosen first, so
 * the claim is found however it was recorded, and recorded only once. Its id joins
 * `releasedAtExit` before it is queued: a holder may record it at any moment from then on.
 */
export async function recordFirstClaim(
  context: QueueingContext,
  search: Omit<ClaimSearch, 'isAlive'>,
  releasedAtExit: Set<string> | undefined,
): Promise<ClaimRecord> {
  const { transactions, settings } = context;
  const id = newClaimId();
  releasedAtExit?.add(id);
  const { request, owner } = search;
  const until = Date.now() + settings.lockTimeoutMs;
  const waiter = new QueueWaiter(context.queue, id, () =>
    queuedRequest({ id, request, owner, ephemeralPortRange: settings.ephemeralPortRange, socketTable: settings.socketTable, until }),
  );
  const record: StateChange<ClaimRecord> = (state) => {
    // A holder that paused before removing the request may have recorded it already.
    const recorded = state.claims.find((claim) => claim.id === id);
    if (recorded !== undefined) return { changed: false, result: recorded };
    waiter.withdraw();
    search.skipped.refreshInsideLock();
    return recordNewClaim(state, { ...search, isAlive: context.ownerCheck() }, undefined, id);
  };
  const recorded = (): ClaimRecord | undefined => transactions.read().claims.find((claim) => claim.id === id);
  try {
    const own = await transactions.runUnless(record, waiter);
    if (own !== undefined) return own.result;
    // Settled by a holder: recorded, or left to this process (it could not tell this
    // process's sockets, or found no room, which this process's own search then reports).
    return recorded() ?? (await transactions.run(record));
  } catch (error) {
    // Given up (the lock timeout), but perhaps served meanwhile: a claim made is not thrown away.
    waiter.withdraw();
    const served = error instanceof LockTimeoutError ? recorded() : undefined;
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

function isRange(value: unknown): value is PortRange {
  return (
    Array.isArray(value) &&
    value.length === 2 &&
    value.every((port) => Number.isInteger(port) && port >= 1 && port <= 65535) &&
    value[0] <= value[1]
  );
}

/** A checked request, or `undefined` for anything else (another version's, damaged, planted). */
function parseRequest(body: unknown): { request: QueuedRequest; options: ResolvedClaimOptions } | undefined {
  const value = body as Partial<QueuedRequest> | null;
  if (typeof value !== 'object' || value === null || value.v !== REQUEST_VERSION) return undefined;
  if (typeof value.id !== 'string' || !/^[\w.-]{1,100}$/.test(value.id) || typeof value.until !== 'number') return undefined;
  if (typeof value.socketTable !== 'boolean' || !(value.netns === null || typeof value.netns === 'string')) return undefined;
  if (!(value.ephemeralPortRange === null || isRange(value.ephemeralPortRange))) return undefined;
  const owner = value.owner;
  if (typeof owner !== 'object' || owner === null) return undefined;
  if (!isOptionalShortString(owner.startTime) || !isOptionalShortString(owner.pidNs) || !isOptionalShortString(owner.beacon))
    return undefined;
  if (typeof value.options !== 'object' || value.options === null || typeof value.options.pid !== 'number') return undefined;
  let options: ResolvedClaimOptions;
  try {
    options = resolveClaimOptions({ ...value.options, sticky: false });
  } catch {
    return undefined;
  }
  return { request: value as QueuedRequest, options };
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
    const isAlive = this.context.ownerCheck();
    const recorded = new Set(state.claims.map((claim) => claim.id));
    const now = Date.now();
    let changed = false;
    for (const file of files) {
      const parsed = parseRequest(file.body);
      // Settled without a claim, its owner takes the lock itself: a request this holder cannot
      // read, one its owner no longer waits for, one recorded already (by a holder that paused
      // before removing it), and one whose owner sees other sockets.
      if (parsed === undefined || parsed.request.until < now || recorded.has(parsed.request.id)) continue;
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
    // The ephemeral and reserved ranges, and the sockets, are those of a network namespace.
    if (request.netns !== this.netns) return undefined;
    const ephemeralPortRange = request.ephemeralPortRange ?? undefined;
    const rules = this.blockedPorts.for(options, ephemeralPortRange);
    if (options.protocol === 'udp' || !request.socketTable) return new SkippedPorts(rules, undefined, 'passive');
    if (this.context.socketTable === undefined) return undefined;
    const skipped = new SkippedPorts(rules, this.context.socketTable, opensThatMatter(options, ephemeralPortRange));
    skipped.refreshInsideLock();
    return skipped;
  }
}
