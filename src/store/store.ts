import { renameSync, type Stats, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { StateIoError } from '../base/errors.js';
import { pausePoint } from '../base/pause-points.js';
import { type ChangeLine, type ClaimRecord, recordKey, type SealLine, type StateData } from './format.js';
import { errnoCode, unlinkQuietly } from '../base/fs.js';
import { randomToken } from '../base/random.js';
import { generationAt, ioError } from './state-file.js';
import { keepDamagedCopy, setAside } from './repair.js';
import { identityOf, readAppended, readSnapshot, sameInode, sameVersion, type Snapshot } from './snapshot.js';
import { type AppendOutcome, appendFenced, diffRecords, linkIfAbsent, nextWriteToken, writeGenerationFile } from './writes.js';

export { type ClaimRecord, recordKey, STATE_VERSION, type StateData } from './format.js';
export { CORRUPT_STATE_WARNING } from './repair.js';

// Appending is far cheaper than rewriting; the log is folded into a new generation once it
// outweighs the snapshot (and at least this much).
const MIN_COMPACT_LOG_BYTES = 32 * 1024;
// Each hop follows one sealed generation; more in one load means files keep being replaced.
const MAX_GENERATION_HOPS = 8;

/** Options of {@link StateStore.load}. */
export interface LoadOptions {
  /**
   * Set a corrupt file aside (renamed, kept for inspection) and warn once: only with the
   * lock held. Without it a corrupt file just reads as empty.
   */
  repair: boolean;
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
  private snapshot: Snapshot | undefined;
  /** Whether the file ended in an unterminated fragment at the last load. */
  private endsInFragment = false;
  /** The records handed out by the last load, in order: what commit diffs against. */
  private loaded: readonly ClaimRecord[] = [];

  constructor(path: string) {
    this.path = path;
  }

  /** Whether this process holds a copy of the file, so a load only reads what was appended since. */
  get hasSnapshot(): boolean {
    return this.snapshot !== undefined;
  }

  /** The current state: a fresh array of frozen records. */
  load(options: LoadOptions): StateData {
    const snapshot = this.refresh(options.repair);
    if (snapshot === undefined) {
      this.loaded = [];
      return { claims: [] };
    }
    // No per-record work here: with thousands of live claims, a load runs in every transaction.
    this.loaded = [...snapshot.records.values()];
    return { ...(snapshot.bootId === undefined ? {} : { bootId: snapshot.bootId }), claims: [...this.loaded] };
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
    if (current.bootId !== next.bootId || this.logBytes(current) > Math.max(MIN_COMPACT_LOG_BYTES, current.headerBytes)) {
      return this.startGeneration(next, current);
    }
    const { add, drop } = diffRecords(this.loaded, next.claims);
    if (add.length === 0 && drop.length === 0) return true;
    return this.append(current, { g: current.gen, at: current.seq, w: nextWriteToken(), add, drop });
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

  /**
   * Appends a fenced line and tells whether it was accepted. The copy is forgotten when the
   * file was replaced or removed since it was read, or when the write failed half-way.
   */
  private append(snapshot: Snapshot, line: ChangeLine | SealLine): boolean {
    let outcome: AppendOutcome;
    try {
      outcome = appendFenced(this.path, snapshot, line, this.endsInFragment);
    } catch (error) {
      this.snapshot = undefined;
      throw ioError('write', this.path, error);
    }
    if (outcome === 'stale') this.snapshot = undefined;
    return outcome === 'accepted';
  }

  /**
   * Writes `next` as a new generation and makes it current: created in place with `link`
   * when there is no file (fails if another writer created one), or by sealing `current`.
   */
  private startGeneration(next: StateData, current: Snapshot | undefined): boolean {
    const gen = randomToken();
    const name = `${basename(this.path)}.${gen}`;
    const genPath = join(dirname(this.path), name);
    let stats: Stats;
    try {
      stats = writeGenerationFile(genPath, gen, next);
    } catch (error) {
      unlinkQuietly(genPath);
      this.snapshot = undefined;
      throw ioError('write', this.path, error);
    }
    let accepted: boolean;
    if (current === undefined) {
      try {
        accepted = linkIfAbsent(genPath, this.path);
      } finally {
        unlinkQuietly(genPath);
      }
    } else {
      // Once the seal is written it may be accepted (a failed read-back says nothing), and a
      // seal naming a missing file loses every claim: from here the file is only removed
      // when the seal is known to be void. An orphan generation file is harmless.
      accepted = this.append(current, { g: current.gen, at: current.seq, w: nextWriteToken(), next: name });
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
}
