import {
  closeSync,
  constants,
  copyFileSync,
  fchmodSync,
  fstatSync,
  linkSync,
  openSync,
  readSync,
  renameSync,
  type Stats,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { StateIoError } from './errors.js';
import { pausePoint } from './pause-points.js';
import {
  type ChangeLine,
  type ClaimRecord,
  LEGACY_GENERATION,
  parseHeader,
  parseLogLine,
  randomToken,
  recordKey,
  type SealLine,
  STATE_VERSION,
  type StateData,
} from './state-format.js';

export { type ClaimRecord, recordKey, STATE_VERSION, type StateData } from './state-format.js';

/** Code of the warning emitted when a corrupt state file is set aside. */
export const CORRUPT_STATE_WARNING = 'PORTLEASE_STATE_CORRUPT';
const PRIVATE_FILE_MODE = 0o600;
const SHARED_FILE_MODE = 0o660;
// Appending is far cheaper than rewriting; the log is folded into a new generation once it
// outweighs the snapshot (and at least this much).
const MIN_COMPACT_LOG_BYTES = 32 * 1024;
// Far beyond any state portlease writes (a claim takes a few hundred bytes, and the log is
// compacted at 32 KiB), and below what one string can hold.
const MAX_STATE_BYTES = 64 * 2 ** 20;
// Each hop follows one sealed generation; more in one load means files keep being replaced.
const MAX_GENERATION_HOPS = 8;
const NEWLINE = 0x0a;
// O_NONBLOCK: a FIFO planted at the state path must not block the open forever.
const READ_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);
// No O_CREAT: appending to a file that vanished must fail, not start a headerless one.
const APPEND_FLAGS = constants.O_RDWR | constants.O_APPEND | (constants.O_NONBLOCK ?? 0);

/** Options of {@link StateStore.load}. */
export interface LoadOptions {
  /**
   * Set a corrupt file aside (renamed, kept for inspection) and warn once: only with the
   * lock held. Without it a corrupt file just reads as empty.
   */
  repair: boolean;
}

/** What this process knows of the current generation, as last read or written. */
interface Snapshot {
  /** Identity of the file the bytes were read from (with `gen`, see generationOf). */
  dev: number;
  ino: number;
  /** Bytes consumed: the header and every complete line after it. */
  size: number;
  mtimeMs: number;
  ctimeMs: number;
  headerBytes: number;
  /** Generation id from the header; accepted lines name it. */
  gen: string;
  /** How many lines of this generation were accepted: the next line must name this number. */
  seq: number;
  /** Set once a seal was accepted: the generation continues in this sibling file. */
  sealedTo: string | undefined;
  /** Malformed records left out so far (each costs itself, not the file). */
  damaged: number;
  bootId: string | undefined;
  records: Map<string, ClaimRecord>;
}

function identityOf(stats: Stats): Pick<Snapshot, 'dev' | 'ino' | 'mtimeMs' | 'ctimeMs'> {
  return { dev: stats.dev, ino: stats.ino, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs };
}

function sameInode(snapshot: Snapshot, stats: Stats): boolean {
  return snapshot.ino === stats.ino && snapshot.dev === stats.dev;
}

/** Whether `stats` is exactly the version the snapshot holds: a shortcut that skips reading. */
function sameVersion(snapshot: Snapshot, stats: Stats): boolean {
  // A new file that reused the inode number with the same size and times would pass; then a
  // claim computed from the stale view is written to the wrong generation and is void, so
  // the shortcut can cost a retry, never a duplicate.
  return sameInode(snapshot, stats) && snapshot.size === stats.size && snapshot.mtimeMs === stats.mtimeMs && snapshot.ctimeMs === stats.ctimeMs;
}

const HEADER_PREFIX = /^\{"version":3,"gen":"([^"]+)"/;
const LEGACY_HEADER_PREFIX = '{"version":2,';

/**
 * The generation an open state file belongs to, from its first bytes. This, not the inode
 * or birth time, tells one generation from the next: inode numbers are reused, and many
 * filesystems report no birth time (or a changing one).
 */
function generationOf(fd: number): string | undefined {
  const head = Buffer.alloc(96);
  const text = head.toString('utf8', 0, readSync(fd, head, 0, head.length, 0));
  if (text.startsWith(LEGACY_HEADER_PREFIX)) return LEGACY_GENERATION;
  return HEADER_PREFIX.exec(text)?.[1];
}

/** Whether the open file `fd` (with `stats`) is the generation the snapshot was read from. */
function sameGeneration(snapshot: Snapshot, stats: Stats, fd: number): boolean {
  return sameInode(snapshot, stats) && generationOf(fd) === snapshot.gen;
}

function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}

function ioError(action: string, path: string, error: unknown): StateIoError {
  return error instanceof StateIoError ? error : new StateIoError(`Cannot ${action} the state file ${path}: ${(error as Error).message}`, error);
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Nothing more to do with it.
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}

let writeCounter = 0;
const writerToken = randomToken();
function nextWriteToken(): string {
  writeCounter = (writeCounter + 1) % Number.MAX_SAFE_INTEGER;
  return `${writerToken}.${writeCounter.toString(36)}`;
}

const warnedPaths = new Set<string>();
// Damaged generations this process has kept a copy of (or tried to).
const reportedDamage = new Set<string>();

/**
 * The state file of one host: a header line (generation id and snapshot) followed by a log
 * of change lines, so a claim appends one short line instead of rewriting everything.
 *
 * **Fencing.** The lock keeps writers apart, but a holder can be paused (SIGSTOP, a suspended
 * laptop, a VM stopped by its host) between checking that it still holds the lock and
 * writing. So the write itself is fenced: every line names its generation and the number of
 * accepted lines it was computed after, and readers apply a line only if it is exactly the
 * next one. A writer reads its line back and reports whether it was the one accepted; a
 * stale writer's line is void for every reader, including itself.
 *
 * **Generations.** Compaction writes the snapshot to a new, uniquely named sibling file, seals
 * the current file with a fenced line naming it, and only then renames it into place.
 * Whoever meets an accepted seal renames the named file into place before reading it, so
 * a rename that a paused compactor makes late finds nothing to move and never puts an old
 * generation back.
 *
 * A line cut short by a crash is never complete (a proper prefix of a JSON object does not
 * parse) and is skipped. What this process last read or wrote is kept in memory, and only the
 * lines appended since are read back.
 */
export class StateStore {
  /** Path of the state file. */
  readonly path: string;
  private readonly shared: boolean;
  private snapshot: Snapshot | undefined;
  /** Whether the file ended in an unterminated fragment at the last load. */
  private endsInFragment = false;
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

  /** The current state: a fresh array of frozen records. */
  load(options: LoadOptions): StateData {
    const snapshot = this.refresh(options.repair);
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
   * Stores `next`, the state last returned by {@link load} after changes: appends the
   * difference, or starts a new generation when the log has grown or the boot changed.
   * Records are compared by identity, which freezing keeps meaningful.
   *
   * @returns whether the change was accepted. `false` means another writer got in first
   * (this one lost the lock while paused): load again and recompute.
   */
  commit(next: StateData): boolean {
    const current = this.snapshot;
    if (current === undefined) return this.startGeneration(next, undefined);
    if (current.gen === LEGACY_GENERATION || current.bootId !== next.bootId || this.logBytes(current) > Math.max(MIN_COMPACT_LOG_BYTES, current.headerBytes)) {
      return this.startGeneration(next, current);
    }
    const kept = new Set<ClaimRecord>();
    const add: ClaimRecord[] = [];
    for (const record of next.claims) {
      if (this.loaded.has(record)) kept.add(record);
      else add.push(record);
    }
    const drop: string[] = [];
    for (const [record, key] of this.loaded) if (!kept.has(record)) drop.push(key);
    if (add.length === 0 && drop.length === 0) return true;
    const line: ChangeLine = { g: current.gen, at: current.seq, w: nextWriteToken(), add, drop };
    return this.appendFenced(current, line);
  }

  private logBytes(snapshot: Snapshot): number {
    return snapshot.size - snapshot.headerBytes;
  }

  /** Brings the snapshot up to date, following sealed generations. */
  private refresh(repair: boolean): Snapshot | undefined {
    for (let hop = 0; hop < MAX_GENERATION_HOPS; hop++) {
      let stats: Stats;
      try {
        stats = statSync(this.path);
      } catch (error) {
        if (errnoCode(error) !== 'ENOENT') throw ioError('read', this.path, error);
        this.snapshot = undefined;
        return undefined;
      }
      const cached = this.snapshot;
      if (cached === undefined || !sameVersion(cached, stats)) {
        const grown = cached !== undefined && cached.sealedTo === undefined && sameInode(cached, stats) && stats.size >= cached.size;
        this.snapshot = grown ? this.readAppended(cached, stats, repair) : this.readWhole(repair);
      }
      const snapshot = this.snapshot;
      if (repair && snapshot !== undefined && snapshot.damaged > 0) this.keepDamagedCopy(snapshot);
      this.endsInFragment = snapshot !== undefined && stats.size > snapshot.size;
      if (snapshot?.sealedTo === undefined) return snapshot;
      if (!this.publish(snapshot.sealedTo)) {
        // The sealed file is still in place and what it names is gone (removed by hand):
        // nothing can be read past the seal.
        if (repair) this.setAside('sealed towards a file that no longer exists', snapshot);
        this.snapshot = undefined;
        return undefined;
      }
    }
    throw new StateIoError(`The state file ${this.path} was replaced ${MAX_GENERATION_HOPS} times while being read; try again.`, undefined);
  }

  /**
   * Renames the generation `name` into place. Returns false only when it is gone while the
   * file in place is still the sealed one, i.e. it can never be published.
   */
  private publish(name: string): boolean {
    const from = join(dirname(this.path), name);
    try {
      renameSync(from, this.path);
      return true;
    } catch (error) {
      if (errnoCode(error) !== 'ENOENT') throw ioError('replace', this.path, error);
    }
    // Someone else published it (or a later one) meanwhile, unless the sealed file is still here.
    try {
      const stats = statSync(this.path);
      return this.snapshot === undefined || !sameInode(this.snapshot, stats);
    } catch {
      return true;
    }
  }

  /** Appends `line` and reads back from what this process had read, to learn whether it was accepted. */
  private appendFenced(snapshot: Snapshot, line: ChangeLine | SealLine): boolean {
    let fd: number | undefined;
    try {
      fd = openSync(this.path, APPEND_FLAGS);
      // A writer that crashed or was cut short mid-line left a fragment without its newline:
      // end it first, with a NUL so that it can never parse (a write one byte short leaves
      // a whole JSON object), and ours is a line of its own.
      const lead = this.endsInFragment && this.endsWithFragment(fd) ? '\0\n' : '';
      const bytes = Buffer.from(`${lead}${JSON.stringify(line)}\n`);
      pausePoint('next' in line ? 'seal' : 'append');
      const written = writeSync(fd, bytes);
      // A short write (file size limit, quota, a full disk) leaves a fragment that readers
      // skip. It is not cut off again: with a paused writer about, truncating could cut
      // another writer's accepted line.
      if (written !== bytes.length) throw Object.assign(new Error(`short write: ${written} of ${bytes.length} bytes`), { code: 'EIO' });
      pausePoint('read-back');
      const stats = fstatSync(fd);
      // The file was replaced since our load: our line went to a generation it does not name.
      if (!sameGeneration(snapshot, stats, fd)) {
        this.snapshot = undefined;
        return false;
      }
      const appended = Buffer.alloc(stats.size - snapshot.size);
      const read = appended.length === 0 ? 0 : readSync(fd, appended, 0, appended.length, snapshot.size);
      // Usually nobody wrote in between: what follows our copy is exactly our line, so it is
      // the next one and accepted, and there is nothing to parse.
      if (read === bytes.length && lead === '' && appended.equals(bytes) && !this.endsInFragment) {
        if ('next' in line) {
          snapshot.seq++;
          snapshot.sealedTo = line.next;
        } else {
          this.applyChange(snapshot, line.add, line.drop);
        }
        Object.assign(snapshot, { size: stats.size, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs });
        return true;
      }
      return this.applyLines(snapshot, appended.subarray(0, read), stats, line.w);
    } catch (error) {
      this.snapshot = undefined;
      if (errnoCode(error) === 'ENOENT') return false; // removed since the load: load again
      throw ioError('write', this.path, error);
    } finally {
      if (fd !== undefined) closeQuietly(fd);
    }
  }

  private endsWithFragment(fd: number): boolean {
    const size = fstatSync(fd).size;
    if (size === 0) return false;
    const last = Buffer.alloc(1);
    readSync(fd, last, 0, 1, size - 1);
    return last[0] !== NEWLINE;
  }

  /**
   * Writes `next` as a new generation and makes it current: created in place with `link`
   * when there is no file (fails if another writer created one), or by sealing `current`.
   */
  private startGeneration(next: StateData, current: Snapshot | undefined): boolean {
    const gen = randomToken();
    const name = `${basename(this.path)}.${gen}`;
    const genPath = join(dirname(this.path), name);
    const text = `${JSON.stringify({ version: STATE_VERSION, gen, ...(next.bootId === undefined ? {} : { bootId: next.bootId }), claims: next.claims })}\n`;
    let stats: Stats;
    try {
      stats = this.writeNewFile(genPath, Buffer.from(text));
    } catch (error) {
      unlinkQuietly(genPath);
      this.snapshot = undefined;
      throw ioError('write', this.path, error);
    }
    let accepted: boolean;
    if (current === undefined) {
      try {
        accepted = this.linkIfAbsent(genPath);
      } finally {
        unlinkQuietly(genPath);
      }
    } else {
      // Once the seal is written it may be accepted (a failed read-back says nothing), and a
      // seal naming a missing file loses every claim: from here the file is only removed
      // when the seal is known to be void. An orphan generation file is harmless.
      accepted = this.appendFenced(current, { g: current.gen, at: current.seq, w: nextWriteToken(), next: name });
      if (!accepted) unlinkQuietly(genPath);
      else {
        pausePoint('publish');
        this.publish(name);
      }
    }
    if (!accepted) return false;
    const headerBytes = stats.size;
    this.snapshot = {
      ...identityOf(stats),
      size: headerBytes,
      headerBytes,
      gen,
      seq: 0,
      sealedTo: undefined,
      damaged: 0,
      bootId: next.bootId,
      records: new Map(next.claims.map((claim) => [recordKey(claim), claim])),
    };
    this.endsInFragment = false;
    return true;
  }

  private writeNewFile(path: string, bytes: Buffer): Stats {
    const fd = openSync(path, 'wx', this.shared ? SHARED_FILE_MODE : PRIVATE_FILE_MODE);
    try {
      // No fsync: the claims only matter within this boot, and a crash of the machine ends the boot.
      let offset = 0;
      while (offset < bytes.length) offset += writeSync(fd, bytes, offset);
      // The umask usually strips group write, which the other users of a shared directory need.
      if (this.shared) fchmodSync(fd, SHARED_FILE_MODE);
      return fstatSync(fd);
    } finally {
      closeQuietly(fd);
    }
  }

  private linkIfAbsent(genPath: string): boolean {
    try {
      linkSync(genPath, this.path);
      return true;
    } catch (error) {
      if (errnoCode(error) === 'EEXIST') return false; // another writer created it first
      throw error;
    }
  }

  private readWhole(repair: boolean): Snapshot | undefined {
    let fd: number;
    try {
      fd = openSync(this.path, READ_FLAGS);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return undefined;
      throw ioError('read', this.path, error);
    }
    let buffer: Buffer;
    let stats: Stats;
    let tooLarge: Stats | undefined;
    try {
      // Stat the open file, so the identity recorded is that of the bytes read.
      stats = fstatSync(fd);
      if (!stats.isFile()) throw new StateIoError(`The state file ${this.path} is not a regular file; remove it.`, undefined);
      if (stats.size > MAX_STATE_BYTES) {
        // Hundreds of thousands of claims: not a state portlease wrote. Read nothing of it.
        tooLarge = stats;
        buffer = Buffer.alloc(0);
      } else {
        buffer = Buffer.alloc(stats.size);
      }
      let length = 0;
      while (length < buffer.length) {
        const read = readSync(fd, buffer, length, buffer.length - length, length);
        if (read === 0) break;
        length += read;
      }
      buffer = buffer.subarray(0, length);
    } catch (error) {
      throw ioError('read', this.path, error);
    } finally {
      closeQuietly(fd);
    }
    if (tooLarge !== undefined) {
      if (repair) this.setAside(`larger than ${MAX_STATE_BYTES / 2 ** 20} MiB (${tooLarge.size} bytes)`, tooLarge);
      return undefined;
    }
    const firstEnd = buffer.indexOf(NEWLINE);
    const header = parseHeader(firstEnd === -1 ? undefined : buffer.toString('utf8', 0, firstEnd));
    if (!header.ok) {
      if (header.newerVersion !== undefined) {
        // Setting a newer format aside would discard its claims, and both versions would
        // then hand out the same ports: refuse instead, loudly.
        throw new StateIoError(
          `The state file ${this.path} was written by a newer portlease (format ${header.newerVersion}, this one reads ${STATE_VERSION}). ` +
            'Use one portlease version per state directory: upgrade this one, or give it its own stateDir.',
          undefined,
        );
      }
      if (repair) this.setAside(buffer.length === 0 ? 'empty' : header.reason, stats);
      return undefined;
    }
    const headerBytes = firstEnd + 1;
    const snapshot: Snapshot = {
      ...identityOf(stats),
      size: headerBytes,
      headerBytes,
      gen: header.gen,
      seq: 0,
      sealedTo: undefined,
      damaged: header.damaged,
      bootId: header.bootId,
      records: new Map(header.claims.map((claim) => [recordKey(claim), claim])),
    };
    this.applyLines(snapshot, buffer.subarray(headerBytes), stats);
    return snapshot;
  }

  private readAppended(snapshot: Snapshot, stats: Stats, repair: boolean): Snapshot | undefined {
    let fd: number | undefined;
    try {
      fd = openSync(this.path, READ_FLAGS);
      const current = fstatSync(fd);
      // Replaced meanwhile (a new generation): read it whole instead.
      if (!sameGeneration(snapshot, current, fd) || current.size < snapshot.size) return this.readWhole(repair);
      const buffer = Buffer.alloc(current.size - snapshot.size);
      const read = readSync(fd, buffer, 0, buffer.length, snapshot.size);
      this.applyLines(snapshot, buffer.subarray(0, read), current);
      return snapshot;
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return undefined;
      throw ioError('read', this.path, error);
    } finally {
      if (fd !== undefined) closeQuietly(fd);
    }
  }

  /**
   * Applies the complete lines of `bytes` (which starts at `snapshot.size`) that follow the
   * fencing rule. Returns whether the line written with token `watch` was accepted.
   */
  private applyLines(snapshot: Snapshot, bytes: Buffer, stats: Stats, watch?: string): boolean {
    // Only complete lines count; a trailing fragment is a write in progress or cut short.
    const complete = bytes.lastIndexOf(NEWLINE) + 1;
    let accepted = false;
    for (const text of bytes.toString('utf8', 0, complete).split('\n')) {
      if (text === '' || snapshot.sealedTo !== undefined) continue;
      const parsed = parseLogLine(text);
      if (parsed.kind === 'void') continue;
      if (parsed.kind === 'legacy') {
        if (snapshot.gen !== LEGACY_GENERATION) continue;
        snapshot.damaged += parsed.damaged;
        this.applyChange(snapshot, parsed.add, parsed.drop);
        continue;
      }
      const { line } = parsed;
      // The fencing rule: exactly the next line of this generation, or void.
      if (line.g !== snapshot.gen || line.at !== snapshot.seq) continue;
      if (parsed.kind === 'seal') {
        snapshot.seq++;
        snapshot.sealedTo = parsed.line.next;
      } else {
        snapshot.damaged += parsed.damaged;
        this.applyChange(snapshot, parsed.line.add, parsed.line.drop);
      }
      if (line.w === watch) accepted = true;
    }
    Object.assign(snapshot, { size: snapshot.size + complete, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs });
    return accepted;
  }

  private applyChange(snapshot: Snapshot, add: readonly ClaimRecord[], drop: readonly string[]): void {
    for (const key of drop) snapshot.records.delete(key);
    for (const record of add) snapshot.records.set(recordKey(record), record);
    snapshot.seq++;
  }

  /**
   * Some records were malformed and left out (each costs itself only): keep a copy of this
   * generation for inspection, once, and warn once per process.
   */
  private keepDamagedCopy(snapshot: Snapshot): void {
    const copyPath = `${this.path}.damaged-${snapshot.gen}`;
    if (reportedDamage.has(copyPath)) return;
    reportedDamage.add(copyPath);
    try {
      copyFileSync(this.path, copyPath, constants.COPYFILE_EXCL);
    } catch {
      // Kept already (or cannot be kept): the warning still tells.
    }
    if (!warnedPaths.has(this.path)) {
      warnedPaths.add(this.path);
      process.emitWarning(
        `portlease: the state file ${this.path} held ${snapshot.damaged} malformed record(s); they were left out and the rest kept. A copy is at ${copyPath}.`,
        { code: CORRUPT_STATE_WARNING },
      );
    }
  }

  /**
   * Renames the file in place aside (kept for inspection), if it is still `expected`, the
   * file found corrupt. A holder paused before this rename may find another file in place by
   * then (its successor's, fresh and valid): such a file is put back at once, and nothing
   * is read from the check that went stale.
   */
  private setAside(reason: string, expected: Pick<Stats, 'dev' | 'ino'>): void {
    const stamp = new Date().toISOString().replace(/[:.]/g, '-');
    const asidePath = `${this.path}.corrupt-${stamp}-${process.pid}`;
    try {
      renameSync(this.path, asidePath);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return;
      throw new StateIoError(`Cannot set aside the corrupt state file ${this.path}: ${(error as Error).message}`, error);
    }
    const moved = statSync(asidePath, { throwIfNoEntry: false });
    if (moved !== undefined && (moved.dev !== expected.dev || moved.ino !== expected.ino)) {
      try {
        linkSync(asidePath, this.path);
        unlinkSync(asidePath);
      } catch {
        // A third process created a file meanwhile; what was moved stays aside, under its name.
      }
      return;
    }
    if (!warnedPaths.has(this.path)) {
      warnedPaths.add(this.path);
      process.emitWarning(`portlease: the state file ${this.path} was ${reason}; it was moved to ${asidePath} and a fresh one started.`, {
        code: CORRUPT_STATE_WARNING,
      });
    }
  }
}
