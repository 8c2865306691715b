import { constants, fchmodSync, fstatSync, linkSync, openSync, readSync, renameSync, type Stats, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { StateIoError } from './errors.js';
import { pausePoint } from './pause-points.js';
import {
  type ChangeLine,
  type ClaimRecord,
  LEGACY_GENERATION,
  randomToken,
  recordKey,
  type SealLine,
  STATE_VERSION,
  type StateData,
} from './state-format.js';
import { closeQuietly, errnoCode, generationAt, ioError, unlinkQuietly } from './state-file.js';
import { keepDamagedCopy, setAside } from './state-repair.js';
import {
  applyChange,
  applyLines,
  identityOf,
  readAppended,
  readSnapshot,
  sameGeneration,
  sameInode,
  sameVersion,
  type Snapshot,
  NEWLINE,
} from './state-snapshot.js';

export { type ClaimRecord, recordKey, STATE_VERSION, type StateData } from './state-format.js';
export { CORRUPT_STATE_WARNING } from './state-repair.js';

const PRIVATE_FILE_MODE = 0o600;
const SHARED_FILE_MODE = 0o660;
// Appending is far cheaper than rewriting; the log is folded into a new generation once it
// outweighs the snapshot (and at least this much).
const MIN_COMPACT_LOG_BYTES = 32 * 1024;
// Each hop follows one sealed generation; more in one load means files keep being replaced.
const MAX_GENERATION_HOPS = 8;
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

let writeCounter = 0;
const writerToken = randomToken();
function nextWriteToken(): string {
  writeCounter = (writeCounter + 1) % Number.MAX_SAFE_INTEGER;
  return `${writerToken}.${writeCounter.toString(36)}`;
}

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
    if (
      current.gen === LEGACY_GENERATION ||
      current.bootId !== next.bootId ||
      this.logBytes(current) > Math.max(MIN_COMPACT_LOG_BYTES, current.headerBytes)
    ) {
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
        this.snapshot = grown ? readAppended(this.path, cached, repair) : readSnapshot(this.path, repair);
      }
      const snapshot = this.snapshot;
      if (repair && snapshot !== undefined && snapshot.damaged > 0) keepDamagedCopy(this.path, snapshot.gen, snapshot.damaged);
      this.endsInFragment = snapshot !== undefined && stats.size > snapshot.size;
      if (snapshot?.sealedTo === undefined) return snapshot;
      if (!this.publish(snapshot.sealedTo)) {
        // The sealed file is still in place and what it names is gone (removed by hand):
        // nothing can be read past the seal.
        if (repair) setAside(this.path, 'sealed towards a file that no longer exists', { generation: snapshot.gen });
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
    // Someone else published it (or a later one) meanwhile, unless the sealed generation is
    // still in place. Asked of the file's own header: a new file may have the old inode number.
    return this.snapshot === undefined || generationAt(this.path) !== this.snapshot.gen;
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
      if (!sameGeneration(snapshot, fd)) {
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
          applyChange(snapshot, line.add, line.drop);
        }
        Object.assign(snapshot, { size: stats.size, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs });
        return true;
      }
      return applyLines(snapshot, appended.subarray(0, read), stats, line.w);
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
}
