import { isPortRun } from '../base/port-numbers.js';

/** One claimed run of consecutive ports, as stored in the state file. Frozen once made. */
export interface ClaimRecord {
  /** Id of the claim, shared by the pieces of a partly released run, so a lease releases exactly what it claimed. */
  readonly id: string;
  /** First port of the run. */
  readonly start: number;
  /** Number of consecutive ports. */
  readonly count: number;
  /** Host the ports were probed on (informational: a claimed port is taken on every host). */
  readonly host: string;
  /** PID of the owner, in the PID namespace `pidNs`; the claim lives as long as this process (unless `expiresAt` is set). */
  readonly pid: number;
  /** Start time of the owner, to tell it from a later process that reuses the PID. */
  readonly startTime?: string;
  /** The PID namespace `pid` belongs to (Linux), so other namespaces never judge it by a PID they cannot see. */
  readonly pidNs?: string;
  /** File name of the owner's beacon socket in the state directory: a liveness signal that crosses PID namespaces. */
  readonly beacon?: string;
  /** When the claim was made, in ms since the epoch. */
  readonly createdAt: number;
  /** When the claim expires regardless of its owner, in ms since the epoch. */
  readonly expiresAt?: number;
  /** Free text from the claimer. */
  readonly label?: string;
}

/** The state as the allocator sees it: a fresh array of frozen records on every load. */
export interface StateData {
  /** Boot the claims belong to; claims of an earlier boot are all void. */
  bootId?: string;
  claims: ClaimRecord[];
}

/**
 * Format version, in the first line of the file. Version 3 is a fenced log: a header line
 * (generation id and snapshot), then change lines that each name the state they follow.
 */
export const STATE_VERSION = 3;

/** The first line of a state file. */
export interface Header {
  version: typeof STATE_VERSION;
  /** Unique id of this file's generation; every change line names it. */
  gen: string;
  bootId?: string;
  claims: ClaimRecord[];
}

/**
 * One line after the header. It was computed from the state after `at` accepted lines of
 * generation `g`, and is accepted only if it is exactly the next one: a writer that lost
 * the lock and wrote from a stale view writes a line nobody applies.
 */
export interface ChangeLine {
  g: string;
  at: number;
  /** Writer token: lets the writer tell its own line from an identical one. */
  w: string;
  add: ClaimRecord[];
  drop: string[];
}

/** A change line that closes its generation: the state continues in the file `next` (a sibling). */
export interface SealLine {
  g: string;
  at: number;
  w: string;
  next: string;
}

/** What one line of the log holds, once parsed and checked. */
export type LogLine = { kind: 'change'; line: ChangeLine; damaged: number } | { kind: 'seal'; line: SealLine } | { kind: 'void' };

function isOptional(value: unknown, type: 'string' | 'number'): boolean {
  return value === undefined || typeof value === type;
}

// The largest distance from the epoch a JavaScript Date can hold.
const MAX_DATE_MS = 8.64e15;

/** Whether `value` is a time (ms since the epoch) a Date can hold: a planted 1e400 is not. */
function isTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && Math.abs(value) <= MAX_DATE_MS;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Whether `value` is a well-formed stored claim. */
export function isClaimRecord(value: unknown): value is ClaimRecord {
  if (!isObject(value)) return false;
  const claim = value;
  return (
    typeof claim.id === 'string' &&
    isPortRun(claim.start, claim.count) &&
    typeof claim.host === 'string' &&
    Number.isInteger(claim.pid) &&
    (claim.pid as number) > 0 &&
    isTime(claim.createdAt) &&
    isOptional(claim.startTime, 'string') &&
    isOptional(claim.pidNs, 'string') &&
    isOptional(claim.beacon, 'string') &&
    (claim.expiresAt === undefined || isTime(claim.expiresAt)) &&
    isOptional(claim.label, 'string')
  );
}

/** The well-formed records of a list, frozen, and how many were not: a bad record costs itself, not its neighbours. */
function validRecords(value: unknown[]): { records: ClaimRecord[]; damaged: number } {
  const records: ClaimRecord[] = [];
  for (const item of value) if (isClaimRecord(item)) records.push(freezeRecord(item));
  return { records, damaged: value.length - records.length };
}

/** A parsed header, or why the first line is not one. */
export type ParsedHeader =
  | { ok: true; gen: string; bootId: string | undefined; claims: ClaimRecord[]; damaged: number }
  | { ok: false; reason: string; newerVersion?: number };

/** Parses and checks the first line of a state file (without its newline). Malformed records are left out and counted. */
export function parseHeader(text: string | undefined): ParsedHeader {
  if (text === undefined) return { ok: false, reason: 'empty or cut short' };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'not valid JSON' };
  }
  if (!isObject(value)) return { ok: false, reason: 'malformed' };
  const { version, gen, bootId, claims } = value;
  if (typeof version === 'number' && version > STATE_VERSION) return { ok: false, reason: `of format ${version}`, newerVersion: version };
  if (version !== STATE_VERSION) return { ok: false, reason: `of unknown version ${JSON.stringify(version)}` };
  const generation = gen;
  // Only the shape randomToken makes: the id goes into file names (a planted `a/../x` must
  // not), and generationOf must read the same id from the raw bytes.
  if (typeof generation !== 'string' || !isGenerationId(generation) || !isOptional(bootId, 'string') || !Array.isArray(claims)) {
    return { ok: false, reason: 'malformed' };
  }
  if (!text.startsWith(`${HEADER_PREFIX}${generation}"`)) return { ok: false, reason: 'malformed' };
  const { records, damaged } = validRecords(claims);
  return { ok: true, gen: generation, bootId: bootId as string | undefined, claims: records, damaged };
}

/**
 * Parses one log line; anything unreadable (a fragment left by a crashed writer, garbage) is
 * `void`. In a readable change line, malformed records and keys are left out and counted:
 * whether the line is accepted depends on its generation and position only.
 */
export function parseLogLine(text: string): LogLine {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: 'void' };
  }
  if (!isObject(value)) return { kind: 'void' };
  const add = Array.isArray(value.add) ? validRecords(value.add) : undefined;
  const drop = Array.isArray(value.drop) ? value.drop.filter((key): key is string => typeof key === 'string') : undefined;
  const damaged = (add?.damaged ?? 0) + (Array.isArray(value.drop) ? value.drop.length - drop!.length : 0);
  if (typeof value.g !== 'string' || !Number.isInteger(value.at) || typeof value.w !== 'string') return { kind: 'void' };
  if (typeof value.next === 'string') {
    return isSiblingName(value.next) ? { kind: 'seal', line: value as unknown as SealLine } : { kind: 'void' };
  }
  if (add === undefined || drop === undefined) return { kind: 'void' };
  return { kind: 'change', line: { g: value.g, at: value.at as number, w: value.w, add: add.records, drop }, damaged };
}

/** A plain file name, never a path: a planted seal must not send readers elsewhere. */
function isSiblingName(name: string): boolean {
  return name.length > 0 && name.length <= 255 && !name.includes('/') && !name.includes('\\') && name !== '.' && name !== '..';
}

/** How every version-3 header begins, byte for byte: what generationOf reads the id from. */
export const HEADER_PREFIX = '{"version":3,"gen":"';
const GENERATION_ID = /^[0-9a-z]{1,32}$/;

/** Whether `id` has the shape of a generation id. */
export function isGenerationId(id: string): boolean {
  return GENERATION_ID.test(id);
}

/** Identifies one stored record: pieces of a split claim share an id but never a start. */
export function recordKey(claim: Pick<ClaimRecord, 'id' | 'start'>): string {
  return `${claim.id}:${claim.start}`;
}

/** Freezes a record, so the store's rule that records never change (it diffs by identity) holds by construction. */
export function freezeRecord(record: ClaimRecord): ClaimRecord {
  return Object.freeze(record);
}
