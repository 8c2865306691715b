import { chmodSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { StateIoError } from './errors.js';
import type { StartTime } from './liveness.js';
import { MAX_PORT } from './options.js';

/** One claimed run of consecutive ports, as stored in the state file. */
export interface ClaimRecord {
  /** Unique id of the claim, so a lease releases exactly what it claimed. */
  id: string;
  /** First port of the run. */
  start: number;
  /** Number of consecutive ports. */
  count: number;
  /** Host the ports were probed on (informational: a claimed port is taken on every host). */
  host: string;
  /** PID of the owner; the claim lives as long as this process (unless `expiresAt` is set). */
  pid: number;
  /** Start time of the owner, to tell it from a later process that reuses the PID. */
  startTime?: string;
  /** When the claim was made, in ms since the epoch. */
  createdAt: number;
  /** When the claim expires regardless of its owner, in ms since the epoch. */
  expiresAt?: number;
  /** Free text from the claimer. */
  label?: string;
}

/** The whole state file. */
export interface StateData {
  version: typeof STATE_VERSION;
  /** Boot the claims belong to; claims of an earlier boot are all void. */
  bootId?: string;
  claims: ClaimRecord[];
}

export const STATE_VERSION = 1;
const PRIVATE_FILE_MODE = 0o600;
const SHARED_FILE_MODE = 0o660;
/** Code of the warning emitted when a corrupt state file is set aside. */
export const CORRUPT_STATE_WARNING = 'PORTLEASE_STATE_CORRUPT';

function isPort(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= MAX_PORT;
}

function isOptional(value: unknown, type: 'string' | 'number'): boolean {
  return value === undefined || typeof value === type;
}

function isClaimRecord(value: unknown): value is ClaimRecord {
  if (typeof value !== 'object' || value === null) return false;
  const claim = value as Record<string, unknown>;
  return (
    typeof claim.id === 'string' &&
    isPort(claim.start) &&
    Number.isInteger(claim.count) &&
    (claim.count as number) >= 1 &&
    (claim.start as number) + (claim.count as number) - 1 <= MAX_PORT &&
    typeof claim.host === 'string' &&
    Number.isInteger(claim.pid) &&
    (claim.pid as number) > 0 &&
    typeof claim.createdAt === 'number' &&
    isOptional(claim.startTime, 'string') &&
    isOptional(claim.expiresAt, 'number') &&
    isOptional(claim.label, 'string')
  );
}

/** Whether `value` is a state file this version of portlease can use as it is. */
export function isStateData(value: unknown): value is StateData {
  if (typeof value !== 'object' || value === null) return false;
  const state = value as Record<string, unknown>;
  return (
    state.version === STATE_VERSION &&
    isOptional(state.bootId, 'string') &&
    Array.isArray(state.claims) &&
    state.claims.every(isClaimRecord)
  );
}

/** Builds the stored identity fields of a claim owner without writing `undefined` keys. */
export function ownerFields(startTime: StartTime): Pick<ClaimRecord, 'startTime'> {
  return startTime === undefined ? {} : { startTime };
}

const warnedPaths = new Set<string>();

function setAside(path: string, reason: string): void {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const asidePath = `${path}.corrupt-${stamp}-${process.pid}`;
  try {
    renameSync(path, asidePath);
  } catch (error) {
    throw new StateIoError(`Cannot set aside the corrupt state file ${path}: ${(error as Error).message}`, error);
  }
  if (!warnedPaths.has(path)) {
    warnedPaths.add(path);
    process.emitWarning(`portlease: the state file ${path} was ${reason}; it was moved to ${asidePath} and a fresh one started.`, {
      code: CORRUPT_STATE_WARNING,
    });
  }
}

/**
 * Reads the state file. A missing file is an empty state; an unreadable or invalid
 * one is renamed aside (kept for inspection), a warning is emitted once, and an
 * empty state is returned. Must be called with the lock held.
 */
export function readState(path: string): StateData {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { version: STATE_VERSION, claims: [] };
    throw new StateIoError(`Cannot read the state file ${path}: ${(error as Error).message}`, error);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    setAside(path, text.length === 0 ? 'empty' : 'not valid JSON');
    return { version: STATE_VERSION, claims: [] };
  }
  if (!isStateData(parsed)) {
    const version = (parsed as { version?: unknown } | null)?.version;
    setAside(path, version === STATE_VERSION ? 'malformed' : `of unknown version ${JSON.stringify(version)}`);
    return { version: STATE_VERSION, claims: [] };
  }
  return parsed;
}

/**
 * Replaces the state file atomically: the new content goes to a temporary file in the
 * same directory, which is then renamed over the old one, so a reader sees either the
 * old or the new state, never a half-written one. Must be called with the lock held.
 */
export function writeState(path: string, state: StateData, shared: boolean): void {
  const temporaryPath = `${path}.tmp-${process.pid}`;
  try {
    // No fsync: the claims only matter within this boot, and a crash of the machine ends the boot.
    writeFileSync(temporaryPath, JSON.stringify(state), { mode: shared ? SHARED_FILE_MODE : PRIVATE_FILE_MODE });
    // The umask usually strips group write, which the other users of a shared directory need.
    if (shared) chmodSync(temporaryPath, SHARED_FILE_MODE);
    renameSync(temporaryPath, path);
  } catch (error) {
    try {
      unlinkSync(temporaryPath);
    } catch {
      // Nothing to clean up.
    }
    throw new StateIoError(`Cannot write the state file ${path}: ${(error as Error).message}`, error);
  }
}
