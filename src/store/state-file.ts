/**
 * Low-level reads of state files: without blocking (a FIFO or device planted where a file is
 * expected must not hang a claim), and the generation id a file names in its first bytes.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync, readSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { STATE_IO_ADVICE, StateIoError } from '../base/errors.js';
import { HEADER_PREFIX, LEGACY_GENERATION, LEGACY_HEADER_PREFIX, randomToken } from './state-format.js';

/** Flags for reading a state file: O_NONBLOCK, so a FIFO planted at its path cannot block the open. */
export const READ_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);
// Far beyond any state portlease writes (a claim takes a few hundred bytes, and the log is
// compacted at 32 KiB), and below what one string can hold.
/** The largest state file portlease reads. */
export const MAX_STATE_BYTES = 64 * 2 ** 20;

/**
 * The generation an open state file belongs to, from its first bytes. This, not the inode
 * or birth time, tells one generation from the next: inode numbers are reused, and many
 * filesystems report no birth time (or a changing one).
 */
export function generationOf(fd: number): string | undefined {
  const head = Buffer.alloc(96);
  const text = head.toString('utf8', 0, readSync(fd, head, 0, head.length, 0));
  if (text.startsWith(LEGACY_HEADER_PREFIX)) return LEGACY_GENERATION;
  if (!text.startsWith(HEADER_PREFIX)) return undefined;
  const end = text.indexOf('"', HEADER_PREFIX.length);
  return end === -1 ? undefined : text.slice(HEADER_PREFIX.length, end);
}

/** The generation of the file at `path` now; `undefined` if it is gone or has none. */
export function generationAt(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, READ_FLAGS);
  } catch {
    return undefined;
  }
  try {
    return fstatSync(fd).isFile() ? generationOf(fd) : undefined;
  } catch {
    return undefined;
  } finally {
    closeQuietly(fd);
  }
}

/** The `code` of a system error, if any. */
export function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}

/** `error` as a {@link StateIoError} naming what failed on which file (kept as is if it is one). */
export function ioError(action: string, path: string, error: unknown): StateIoError {
  return error instanceof StateIoError
    ? error
    : new StateIoError(`Cannot ${action} the state file ${path}: ${(error as Error).message}. ${STATE_IO_ADVICE}`, error);
}

/** Closes `fd`, ignoring errors: for `finally` blocks. */
export function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Nothing more to do with it.
  }
}

/** Removes `path` if it is there. */
export function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}

/** The bytes of the regular file at `path` (at most {@link MAX_STATE_BYTES}), read without blocking. */
export function readRegularFile(path: string): Buffer {
  const fd = openSync(path, READ_FLAGS);
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile() || stats.size > MAX_STATE_BYTES)
      throw new Error(`${path} is not a regular file of at most ${MAX_STATE_BYTES} bytes`);
    return readFileSync(fd);
  } finally {
    closeQuietly(fd);
  }
}

// O_EXCL with O_CREAT: a name planted in a shared directory (a symlink to one of your files,
// a FIFO) makes the open fail instead of being written through.
const NEW_FILE_FLAGS =
  constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);

/**
 * Replaces the file at `path` with `text` whole: written to a new file of a random name
 * beside it, then renamed over it. Readers see the old file or the new one, never a part.
 * @throws the underlying error; the temporary file is removed.
 */
export function replaceFile(path: string, text: string, mode: number): void {
  const temporaryPath = `${path}.tmp-${randomToken()}`;
  try {
    const fd = openSync(temporaryPath, NEW_FILE_FLAGS, mode);
    try {
      writeFileSync(fd, text);
    } finally {
      closeQuietly(fd);
    }
    renameSync(temporaryPath, path);
  } catch (error) {
    unlinkQuietly(temporaryPath);
    throw error;
  }
}
