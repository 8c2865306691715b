/**
 * A claim request as it waits in the queue: what its owner leaves (the claim options it
 * resolved, its owner fields, its allocator's settings), and the checks a holder runs on a
 * file it did not write.
 */
import { currentNetworkNamespace } from '../base/proc.js';
import { isPortRange, type PortRange } from '../base/port-numbers.js';
import type { OwnerFields } from '../claims/new-claim.js';
import { resolveClaimOptions } from '../options/options.js';
import type { ResolvedClaimOptions } from '../options/option-types.js';

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

// A holder serves a request only while its owner has this long to spare beyond breaking the
// holder's lock (see QueuedRequest.breakAfterMs).
export const BREAK_MARGIN_MS = 1000;

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
export function parseRequest(body: unknown): { request: QueuedRequest; options: ResolvedClaimOptions } | undefined {
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
