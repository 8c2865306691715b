/**
 * The writes of the state store: a fenced line appended and read back, and a new generation
 * file. Each works on the caller's {@link Snapshot} and says what became of the write; what
 * to do next (load again, recompute) is the store's decision.
 */
import { constants, fstatSync, linkSync, openSync, readSync, type Stats, writeSync } from 'node:fs';
import { pausePoint } from '../base/pause-points.js';
import { closeQuietly, errnoCode } from '../base/fs.js';
import { processSlot } from '../base/process-state.js';
import { randomToken } from '../base/random.js';
import { StateIoError } from '../base/errors.js';
import { type ChangeLine, type ClaimRecord, recordKey, type SealLine, STATE_VERSION, type StateData } from './format.js';
import { STATE_FILE_MODE } from './state-dir.js';
import { applyChange, applyLines, NEWLINE, sameGeneration, type Snapshot } from './snapshot.js';

// No O_CREAT: appending to a file that vanished must fail, not start a headerless one.
const APPEND_FLAGS = constants.O_RDWR | constants.O_APPEND | (constants.O_NONBLOCK ?? 0);

/** A token naming one write of this thread, so a reader can tell its own line from an equal one. */
export function nextWriteToken(): string {
  // Process state: two copies of portlease in one thread must never write the same token.
  const writer = processSlot('writer.v1', () => ({ token: randomToken(), count: 0 }));
  writer.count = (writer.count + 1) % Number.MAX_SAFE_INTEGER;
  return `${writer.token}.${writer.count.toString(36)}`;
}

/**
 * What became of a fenced append: `accepted` (the snapshot now includes it), `rejected`
 * (another writer's line came first; the snapshot includes theirs), or `stale` (the file was
 * removed or replaced since the snapshot was read: it must be read again).
 */
export type AppendOutcome = 'accepted' | 'rejected' | 'stale';

/**
 * Appends `line` to the file at `path` and reads back from where `snapshot` ends, applying
 * whatever is there, to learn whether `line` was the next one and so accepted.
 * `endsInFragment` says the last read found an unterminated fragment at the end.
 *
 * @throws the underlying I/O error (the snapshot may then be half updated: drop it).
 */
export function appendFenced(path: string, snapshot: Snapshot, line: ChangeLine | SealLine, endsInFragment: boolean): AppendOutcome {
  let fd: number | undefined;
  try {
    fd = openSync(path, APPEND_FLAGS);
    // A writer that crashed or was cut short mid-line left a fragment without its newline:
    // end it first, with a NUL so that it can never parse (a write one byte short leaves
    // a whole JSON object), and ours is a line of its own.
    const lead = endsInFragment && endsWithFragment(fd) ? '\0\n' : '';
    const bytes = Buffer.from(`${lead}${JSON.stringify(line)}\n`);
    pausePoint('next' in line ? 'seal' : 'append');
    const written = writeSync(fd, bytes);
    // A short write (file size limit, quota, a full disk) leaves a fragment that readers
    // skip. It is not cut off again: with a paused writer about, truncating could cut
    // another writer's accepted line.
    if (written !== bytes.length)
      throw new StateIoError(
        `Cannot write the state file ${path}: only ${written} of ${bytes.length} bytes were written (a full disk, or a file size limit).`,
        undefined,
      );
    pausePoint('read-back');
    const stats = fstatSync(fd);
    // The file was replaced since our load: our line went to a generation it does not name.
    if (!sameGeneration(snapshot, fd)) return 'stale';
    const appended = Buffer.alloc(stats.size - snapshot.size);
    const read = appended.length === 0 ? 0 : readSync(fd, appended, 0, appended.length, snapshot.size);
    // Usually nobody wrote in between: what follows our copy is exactly our line, so it is
    // the next one and accepted, and there is nothing to parse.
    if (read === bytes.length && lead === '' && appended.equals(bytes) && !endsInFragment) {
      if ('next' in line) {
        snapshot.seq++;
        snapshot.sealedTo = line.next;
      } else {
        applyChange(snapshot, line.add, line.drop);
      }
      Object.assign(snapshot, { size: stats.size, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs });
      return 'accepted';
    }
    return applyLines(snapshot, appended.subarray(0, read), stats, line.w) ? 'accepted' : 'rejected';
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return 'stale'; // removed since the load
    throw error;
  } finally {
    if (fd !== undefined) closeQuietly(fd);
  }
}

function endsWithFragment(fd: number): boolean {
  const size = fstatSync(fd).size;
  if (size === 0) return false;
  const last = Buffer.alloc(1);
  readSync(fd, last, 0, 1, size - 1);
  return last[0] !== NEWLINE;
}

/**
 * Writes `state` as the header of a new generation file at `path` (which must not exist) and
 * returns its stats. The file is not yet in place: the caller links or seals and renames it.
 */
export function writeGenerationFile(path: string, gen: string, state: StateData): Stats {
  const header = { version: STATE_VERSION, gen, ...(state.bootId === undefined ? {} : { bootId: state.bootId }), claims: state.claims };
  const bytes = Buffer.from(`${JSON.stringify(header)}\n`);
  const fd = openSync(path, 'wx', STATE_FILE_MODE);
  try {
    // No fsync: the claims only matter within this boot, and a crash of the machine ends the boot.
    let offset = 0;
    while (offset < bytes.length) offset += writeSync(fd, bytes, offset);
    return fstatSync(fd);
  } finally {
    closeQuietly(fd);
  }
}

/** Links `from` to `to` unless `to` exists. Returns false when another writer created it first. */
export function linkIfAbsent(from: string, to: string): boolean {
  try {
    linkSync(from, to);
    return true;
  } catch (error) {
    if (errnoCode(error) === 'EEXIST') return false;
    throw error;
  }
}

/**
 * The changes from the records last loaded to `next`: records added, keys of records dropped.
 * Records are compared by identity. Callers filter the loaded array and push new records at
 * its end, so one ordered walk finds the changes without hashing every record (with
 * thousands of live claims, hashing them was most of a transaction's cost). A caller that
 * reorders the array only makes the line longer: a record seen out of order is dropped and
 * added again, and every reader applies a line's drops before its adds.
 */
export function diffRecords(loaded: readonly ClaimRecord[], next: readonly ClaimRecord[]): { add: ClaimRecord[]; drop: string[] } {
  let kept = 0;
  const drop: string[] = [];
  for (const record of loaded) {
    if (next[kept] === record) kept++;
    else drop.push(recordKey(record));
  }
  return { add: next.slice(kept), drop };
}
