/**
 * This process's copy of the state file (a {@link Snapshot}): reading a generation whole,
 * reading what was appended since, and applying log lines by the fencing rule.
 */
import { fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { StateIoError } from '../base/errors.js';
import { closeQuietly, errnoCode, READ_FLAGS } from '../base/fs.js';
import { generationOf, ioError, MAX_STATE_BYTES } from './state-file.js';
import { type ClaimRecord, parseHeader, parseLogLine, recordKey, STATE_VERSION } from './format.js';
import { setAside } from './repair.js';

/** The line separator of the state file. */
export const NEWLINE = 0x0a;

/** What this process knows of the current generation, as last read or written. */
export interface Snapshot {
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

/** The stat fields a snapshot keeps to tell whether the file changed since. */
export function identityOf(stats: Stats): Pick<Snapshot, 'dev' | 'ino' | 'mtimeMs' | 'ctimeMs'> {
  return { dev: stats.dev, ino: stats.ino, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs };
}

/** Whether `stats` is the inode the snapshot was read from (not proof of the same generation: see generationOf). */
export function sameInode(snapshot: Snapshot, stats: Stats): boolean {
  return snapshot.ino === stats.ino && snapshot.dev === stats.dev;
}

/** Whether `stats` is exactly the version the snapshot holds: a shortcut that skips reading. */
export function sameVersion(snapshot: Snapshot, stats: Stats): boolean {
  // A new file that reused the inode number with the same size and times would pass; then a
  // claim computed from the stale view is written to the wrong generation and is void, so
  // the shortcut can cost a retry, never a duplicate.
  return (
    sameInode(snapshot, stats) && snapshot.size === stats.size && snapshot.mtimeMs === stats.mtimeMs && snapshot.ctimeMs === stats.ctimeMs
  );
}

/**
 * Whether the open file `fd` is the generation the snapshot was read from. Generation ids are
 * unique, so they alone decide: inode numbers are reused, and unstable on some filesystems.
 */
export function sameGeneration(snapshot: Snapshot, fd: number): boolean {
  return generationOf(fd) === snapshot.gen;
}

/**
 * Reads the state file at `path` whole. A corrupt file reads as `undefined` (set aside first
 * when `repair`); a newer format is refused with a {@link StateIoError}.
 */
export function readSnapshot(path: string, repair: boolean): Snapshot | undefined {
  let fd: number;
  try {
    fd = openSync(path, READ_FLAGS);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw ioError('read', path, error);
  }
  let buffer: Buffer;
  let stats: Stats;
  let tooLarge: Stats | undefined;
  try {
    // Stat the open file, so the identity recorded is that of the bytes read.
    stats = fstatSync(fd);
    if (!stats.isFile()) throw new StateIoError(`The state file ${path} is not a regular file; remove it.`, undefined);
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
    throw ioError('read', path, error);
  } finally {
    closeQuietly(fd);
  }
  if (tooLarge !== undefined) {
    if (repair) setAside(path, `larger than ${MAX_STATE_BYTES / 2 ** 20} MiB (${tooLarge.size} bytes)`, { inode: tooLarge });
    return undefined;
  }
  const firstEnd = buffer.indexOf(NEWLINE);
  const header = parseHeader(firstEnd === -1 ? undefined : buffer.toString('utf8', 0, firstEnd));
  if (!header.ok) {
    if (header.newerVersion !== undefined) {
      // Setting a newer format aside would discard its claims, and both versions would
      // then hand out the same ports: refuse instead, loudly.
      throw new StateIoError(
        `The state file ${path} was written by a newer portlease (format ${header.newerVersion}, this one reads ${STATE_VERSION}). ` +
          'Use one portlease version per state directory: upgrade this one, or give it its own stateDir.',
        undefined,
      );
    }
    if (repair) setAside(path, buffer.length === 0 ? 'empty' : header.reason, { inode: stats });
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
  applyLines(snapshot, buffer.subarray(headerBytes), stats);
  return snapshot;
}

/** Applies what was appended to `snapshot`'s generation since it was read; reads whole if the file is another generation now. */
export function readAppended(path: string, snapshot: Snapshot, repair: boolean): Snapshot | undefined {
  let fd: number | undefined;
  try {
    fd = openSync(path, READ_FLAGS);
    const current = fstatSync(fd);
    // Replaced meanwhile (a new generation): read it whole instead.
    if (!sameGeneration(snapshot, fd) || current.size < snapshot.size || current.size > MAX_STATE_BYTES) return readSnapshot(path, repair);
    const buffer = Buffer.alloc(current.size - snapshot.size);
    const read = readSync(fd, buffer, 0, buffer.length, snapshot.size);
    applyLines(snapshot, buffer.subarray(0, read), current);
    return snapshot;
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return undefined;
    throw ioError('read', path, error);
  } finally {
    if (fd !== undefined) closeQuietly(fd);
  }
}

/**
 * Applies the complete lines of `bytes` (which starts at `snapshot.size`) that follow the
 * fencing rule. Returns whether the line written with token `watch` was accepted.
 */
export function applyLines(snapshot: Snapshot, bytes: Buffer, stats: Stats, watch?: string): boolean {
  // Only complete lines count; a trailing fragment is a write in progress or cut short.
  const complete = bytes.lastIndexOf(NEWLINE) + 1;
  let accepted = false;
  for (const text of bytes.toString('utf8', 0, complete).split('\n')) {
    if (text === '' || snapshot.sealedTo !== undefined) continue;
    const parsed = parseLogLine(text);
    if (parsed.kind === 'void') continue;
    const { line } = parsed;
    // The fencing rule: exactly the next line of this generation, or void.
    if (line.g !== snapshot.gen || line.at !== snapshot.seq) continue;
    if (parsed.kind === 'seal') {
      snapshot.seq++;
      snapshot.sealedTo = parsed.line.next;
    } else {
      snapshot.damaged += parsed.damaged;
      applyChange(snapshot, parsed.line.add, parsed.line.drop);
    }
    if (line.w === watch) accepted = true;
  }
  Object.assign(snapshot, { size: snapshot.size + complete, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs });
  return accepted;
}

/**
 * Applies one accepted change line to the snapshot: drops first, then adds, so a record a
 * line both drops and adds (see `diffRecords`) stays.
 */
export function applyChange(snapshot: Snapshot, add: readonly ClaimRecord[], drop: readonly string[]): void {
  for (const key of drop) snapshot.records.delete(key);
  for (const record of add) snapshot.records.set(recordKey(record), record);
  snapshot.seq++;
}
