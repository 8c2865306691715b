import {
  chmodSync,
  closeSync,
  fstatSync,
  ftruncateSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
  writeSync,
  type Stats,
} from 'node:fs';
import { StateIoError } from './errors.js';
import type { StartTime } from './liveness.js';
import { MAX_PORT } from './options.js';

/** One claimed run of consecutive ports, as stored in the state file. Never mutated once made. */
export interface ClaimRecord {
  /** Id of the claim, shared by the pieces of a partly released run, so a lease releases exactly what it claimed. */
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

/** The state as the allocator sees it. */
export interface StateData {
  /** Boot the claims belong to; claims of an earlier boot are all void. */
  bootId?: string;
  claims: ClaimRecord[];
}

/**
 * Format version, in the first line of the file. Version 2 is a log: a header line holding
 * a snapshot, then one line per change (`{"add":[...],"drop":[...]}`).
 */
export const STATE_VERSION = 2;
/** Code of the warning emitted when a corrupt state file is set aside. */
export const CORRUPT_STATE_WARNING = 'PORTLEASE_STATE_CORRUPT';
const PRIVATE_FILE_MODE = 0o600;
const SHARED_FILE_MODE = 0o660;
// Appending is ~100× cheaper than rewriting (rename over an existing file makes ext4 flush
// it: ~1.5 ms here); the log is folded back into one snapshot once it outweighs it.
const MIN_COMPACT_LOG_BYTES = 16 * 1024;
const NEWLINE = 0x0a;

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

interface Header {
  version: typeof STATE_VERSION;
  bootId?: string;
  claims: ClaimRecord[];
}

interface Change {
  add: ClaimRecord[];
  drop: string[];
}

function isHeader(value: unknown): value is Header {
  if (typeof value !== 'object' || value === null) return false;
  const header = value as Record<string, unknown>;
  return (
    header.version === STATE_VERSION &&
    isOptional(header.bootId, 'string') &&
    Array.isArray(header.claims) &&
    header.claims.every(isClaimRecord)
  );
}

function isChange(value: unknown): value is Change {
  if (typeof value !== 'object' || value === null) return false;
  const change = value as Record<string, unknown>;
  return (
    Array.isArray(change.add) &&
    change.add.every(isClaimRecord) &&
    Array.isArray(change.drop) &&
    change.drop.every((key) => typeof key === 'string')
  );
}

/** Identifies one stored record: pieces of a split claim share an id but never a start. */
export function recordKey(claim: Pick<ClaimRecord, 'id' | 'start'>): string {
  return `${claim.id}:${claim.start}`;
}

/** Builds the stored identity fields of a claim owner without writing `undefined` keys. */
export function ownerFields(startTime: StartTime): Pick<ClaimRecord, 'startTime'> {
  return startTime === undefined ? {} : { startTime };
}

/** What is known of the file as last read or written by this process. */
interface Snapshot {
  /** Identity of the file version this snapshot matches. */
  dev: number;
  ino: number;
  /** Tells a new file that reuses a freed inode number from the old one. */
  birthtimeMs: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  /** Bytes of the header line; the rest is the change log. */
  headerBytes: number;
  bootId: string | undefined;
  records: Map<string, ClaimRecord>;
}

function sameInode(snapshot: Snapshot, stats: Stats): boolean {
  return snapshot.ino === stats.ino && snapshot.dev === stats.dev && snapshot.birthtimeMs === stats.birthtimeMs;
}

/**
 * Whether `stats` is the file the snapshot was read from (possibly grown since). Compaction
 * frees inode numbers that a later compaction may get again; only the birth time tells such
 * a file apart, so where the filesystem reports none (0) this is never assumed.
 */
function sameFile(snapshot: Snapshot, stats: Stats): boolean {
  return snapshot.birthtimeMs !== 0 && sameInode(snapshot, stats);
}

/** Whether `stats` is exactly the version the snapshot holds (ctime has nanoseconds: a new file cannot match it). */
function sameVersion(snapshot: Snapshot, stats: Stats): boolean {
  return (
    sameInode(snapshot, stats) &&
    snapshot.size === stats.size &&
    snapshot.mtimeMs === stats.mtimeMs &&
    snapshot.ctimeMs === stats.ctimeMs
  );
}

const warnedPaths = new Set<string>();

function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}

/**
 * The state file of one host: a snapshot line followed by a log of changes, so that a
 * claim appends one short line instead of rewriting everything. Every line is written with
 * one `write` while the lock is held; a line cut short by a crash is never complete (a
 * proper prefix of a JSON object does not parse) and is skipped, so a reader always sees
 * the state before or after a change, never half of one. The log is compacted into a new
 * snapshot (temporary file + rename) once it outweighs the snapshot. What this process last
 * read or wrote is kept in memory, and only the lines other processes appended since are
 * read back.
 */
export class StateStore {
  /** Path of the state file. */
  readonly path: string;
  private readonly shared: boolean;
  private snapshot: Snapshot | undefined;
  /** Size of the file at the last load; larger than the snapshot's only after a cut-short write. */
  private loadedSize = 0;
  /** The records handed out by the last load, with their keys: what commit diffs against. */
  private loaded = new Map<ClaimRecord, string>();

  constructor(path: string, shared: boolean) {
    this.path = path;
    this.shared = shared;
  }

  /** Whether this process holds a copy of the file, so a load only reads what was appended since. */
  get hasSnapshot(): boolean {
    return this.snapshot !== undefined;
  }

  /**
   * The current state. With `repair` (the lock held), a corrupt file is renamed aside
   * (kept for inspection), a warning is emitted once, and an empty state returned; without
   * it (reading without the lock), a corrupt file just reads as empty.
   */
  load(repair = true): StateData {
    let stats: Stats;
    try {
      stats = statSync(this.path);
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT') throw new StateIoError(`Cannot read the state file ${this.path}: ${(error as Error).message}`, error);
      this.snapshot = undefined;
      return { claims: [] };
    }
    this.loadedSize = stats.size;
    const cached = this.snapshot;
    if (cached === undefined || !sameVersion(cached, stats)) {
      const grown = cached !== undefined && sameFile(cached, stats) && stats.size > cached.size;
      this.snapshot = grown ? this.readAppended(cached, stats, repair) : this.readWhole(repair);
    }
    const snapshot = this.snapshot;
    this.loaded = new Map();
    if (snapshot === undefined) return { claims: [] };
    const claims: ClaimRecord[] = [];
    for (const [key, record] of snapshot.records) {
      this.loaded.set(record, key);
      claims.push(record);
    }
    return { ...(snapshot.bootId === undefined ? {} : { bootId: snapshot.bootId }), claims };
  }

  /**
   * Stores `next`, the state last returned by {@link load} after changes, by appending the
   * difference (or by writing a new snapshot when the log has grown or the boot changed).
   * Must be called with the lock held, right after `load`.
   */
  commit(next: StateData): void {
    const current = this.snapshot;
    if (current === undefined || current.bootId !== next.bootId || this.logBytes(current) > Math.max(MIN_COMPACT_LOG_BYTES, current.headerBytes)) {
      this.writeSnapshot(next);
      return;
    }
    // Records are never mutated, so identity tells what changed without comparing contents.
    const kept = new Set<ClaimRecord>();
    const add: ClaimRecord[] = [];
    for (const record of next.claims) {
      if (this.loaded.has(record)) kept.add(record);
      else add.push(record);
    }
    const drop: string[] = [];
    for (const [record, key] of this.loaded) if (!kept.has(record)) drop.push(key);
    if (add.length === 0 && drop.length === 0) return;
    this.append(current, { add, drop });
  }

  private logBytes(snapshot: Snapshot): number {
    return snapshot.size - snapshot.headerBytes;
  }

  private append(snapshot: Snapshot, change: Change): void {
    let fd: number | undefined;
    try {
      fd = openSync(this.path, 'a+');
      // A writer that crashed mid-line left a fragment without its newline: end it first,
      // so the fragment stays a line of its own (skipped by readers) and ours is whole.
      const lead = this.loadedSize !== snapshot.size && this.endsWithFragment(fd) ? '\n' : '';
      const line = Buffer.from(`${lead}${JSON.stringify(change)}\n`);
      const written = writeSync(fd, line);
      if (written !== line.length) {
        // A short write (file size limit, quota, a full disk at a block boundary): take the
        // fragment back, so the change is neither half there nor believed committed here.
        ftruncateSync(fd, this.loadedSize);
        throw Object.assign(new Error(`short write: ${written} of ${line.length} bytes`), { code: 'EIO' });
      }
      const stats = fstatSync(fd);
      for (const key of change.drop) snapshot.records.delete(key);
      for (const record of change.add) snapshot.records.set(recordKey(record), record);
      Object.assign(snapshot, { size: stats.size, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs });
    } catch (error) {
      // The file on disk now holds at most a fragment that readers skip; forget the cache.
      this.snapshot = undefined;
      throw new StateIoError(`Cannot write the state file ${this.path}: ${(error as Error).message}`, error);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }

  private endsWithFragment(fd: number): boolean {
    const size = fstatSync(fd).size;
    if (size === 0) return false;
    const last = Buffer.alloc(1);
    readSync(fd, last, 0, 1, size - 1);
    return last[0] !== NEWLINE;
  }

  private writeSnapshot(next: StateData): void {
    const header: Header = {
      version: STATE_VERSION,
      ...(next.bootId === undefined ? {} : { bootId: next.bootId }),
      claims: next.claims,
    };
    const text = `${JSON.stringify(header)}\n`;
    const temporaryPath = `${this.path}.tmp-${process.pid}`;
    try {
      // No fsync: the claims only matter within this boot, and a crash of the machine ends the boot.
      writeFileSync(temporaryPath, text, { mode: this.shared ? SHARED_FILE_MODE : PRIVATE_FILE_MODE });
      // The umask usually strips group write, which the other users of a shared directory need.
      if (this.shared) chmodSync(temporaryPath, SHARED_FILE_MODE);
      renameSync(temporaryPath, this.path);
      const stats = statSync(this.path);
      this.snapshot = {
        dev: stats.dev,
        ino: stats.ino,
        birthtimeMs: stats.birthtimeMs,
        size: stats.size,
        mtimeMs: stats.mtimeMs,
        ctimeMs: stats.ctimeMs,
        headerBytes: Buffer.byteLength(text),
        bootId: next.bootId,
        records: new Map(next.claims.map((claim) => [recordKey(claim), claim])),
      };
    } catch (error) {
      this.snapshot = undefined;
      try {
        unlinkSync(temporaryPath);
      } catch {
        // Nothing to clean up.
      }
      throw new StateIoError(`Cannot write the state file ${this.path}: ${(error as Error).message}`, error);
    }
  }

  private readWhole(repair: boolean): Snapshot | undefined {
    let fd: number;
    try {
      fd = openSync(this.path, 'r');
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return undefined;
      throw new StateIoError(`Cannot read the state file ${this.path}: ${(error as Error).message}`, error);
    }
    let buffer: Buffer;
    let stats: Stats;
    try {
      // Stat the open file, so the identity recorded is that of the bytes read.
      stats = fstatSync(fd);
      buffer = readFileSync(fd);
    } finally {
      closeSync(fd);
    }
    const text = buffer.toString('utf8');
    const firstEnd = text.indexOf('\n');
    let header: unknown;
    try {
      header = firstEnd === -1 ? undefined : JSON.parse(text.slice(0, firstEnd));
    } catch {
      header = undefined;
    }
    if (!isHeader(header)) {
      const version = (header as { version?: unknown } | null | undefined)?.version;
      if (typeof version === 'number' && version > STATE_VERSION) {
        // Setting a newer format aside would discard its claims, and both versions would
        // then hand out the same ports: refuse instead, loudly.
        throw new StateIoError(
          `The state file ${this.path} was written by a newer portlease (format ${version}, this one reads ${STATE_VERSION}). ` +
            'Use one portlease version per state directory: upgrade this one, or give it its own stateDir.',
          undefined,
        );
      }
      if (repair) this.setAside(this.describeCorruption(text, header));
      return undefined;
    }
    const headerBytes = Buffer.byteLength(text.slice(0, firstEnd + 1));
    const snapshot: Snapshot = {
      dev: stats.dev,
      ino: stats.ino,
      birthtimeMs: stats.birthtimeMs,
      size: headerBytes,
      mtimeMs: stats.mtimeMs,
      ctimeMs: stats.ctimeMs,
      headerBytes,
      bootId: header.bootId,
      records: new Map(header.claims.map((claim) => [recordKey(claim), claim])),
    };
    this.applyLines(snapshot, buffer.subarray(headerBytes), stats);
    return snapshot;
  }

  private readAppended(snapshot: Snapshot, stats: Stats, repair: boolean): Snapshot | undefined {
    const length = stats.size - snapshot.size;
    const buffer = Buffer.alloc(length);
    let fd: number | undefined;
    try {
      fd = openSync(this.path, 'r');
      const current = fstatSync(fd);
      // Replaced meanwhile (compacted by another process): read it whole instead.
      if (!sameFile(snapshot, current) || current.size < stats.size) return this.readWhole(repair);
      readSync(fd, buffer, 0, length, snapshot.size);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return undefined;
      throw new StateIoError(`Cannot read the state file ${this.path}: ${(error as Error).message}`, error);
    } finally {
      if (fd !== undefined) closeSync(fd);
    }
    this.applyLines(snapshot, buffer, stats);
    return snapshot;
  }

  /** Applies the complete change lines of `bytes` (which starts at `snapshot.size`). */
  private applyLines(snapshot: Snapshot, bytes: Buffer, stats: Stats): void {
    // Only complete lines count; a trailing fragment is a write still in progress or cut short.
    const complete = bytes.lastIndexOf(NEWLINE) + 1;
    for (const line of bytes.subarray(0, complete).toString('utf8').split('\n')) {
      if (line === '') continue;
      let change: unknown;
      try {
        change = JSON.parse(line);
      } catch {
        continue; // A fragment left by a writer that crashed mid-line: never committed.
      }
      if (!isChange(change)) continue;
      for (const key of change.drop) snapshot.records.delete(key);
      for (const record of change.add) snapshot.records.set(recordKey(record), record);
    }
    Object.assign(snapshot, { size: snapshot.size + complete, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs });
    // A fragment at the end means the identity no longer matches the bytes we consumed.
    if (complete !== bytes.length) snapshot.mtimeMs = Number.NaN;
  }

  private describeCorruption(text: string, header: unknown): string {
    if (text.length === 0) return 'empty';
    if (header === undefined) return 'not valid JSON';
    const version = (header as { version?: unknown } | null)?.version;
    return version === STATE_VERSION ? 'malformed' : `of unknown version ${JSON.stringify(version)}`;
  }

  private setAside(reason: string): void {
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const asidePath = `${this.path}.corrupt-${stamp}-${process.pid}`;
    try {
      renameSync(this.path, asidePath);
    } catch (error) {
      throw new StateIoError(`Cannot set aside the corrupt state file ${this.path}: ${(error as Error).message}`, error);
    }
    if (!warnedPaths.has(this.path)) {
      warnedPaths.add(this.path);
      process.emitWarning(`portlease: the state file ${this.path} was ${reason}; it was moved to ${asidePath} and a fresh one started.`, {
        code: CORRUPT_STATE_WARNING,
      });
    }
  }
}
