/**
 * File primitives every subsystem shares: error codes, quiet cleanup, and opens that never
 * block on a FIFO or device planted where a regular file is expected.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { StateIoError } from './errors.js';
import { randomToken } from './random.js';
import { debugLetGo } from './debug.js';

/** The `code` of a system error, if any. */
export function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}

/** Flags for reading a file: O_NONBLOCK, so a FIFO planted at its path cannot block the open. */
export const READ_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

/** {@link READ_FLAGS} that also refuse a symbolic link (O_NOFOLLOW), for files another process may have planted. */
export const READ_NO_FOLLOW_FLAGS = READ_FLAGS | (constants.O_NOFOLLOW ?? 0);

/**
 * Flags for creating a new file: O_EXCL with O_CREAT, so that a name planted in a shared
 * directory (a symlink to one of your files, a FIFO) makes the open fail instead of being
 * written through.
 */
export const NEW_FILE_FLAGS =
  constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);

/** Closes `fd`, ignoring errors: for `finally` blocks. */
export function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch (error) {
    // Nothing more to do with it.
    debugLetGo('base/fs', error);
  }
}

/** Removes `path` if it is there and may be removed; never throws. */
export function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch (error) {
    // Already gone, or not ours to remove (a sticky directory): nothing to do.
    debugLetGo('base/fs', error);
  }
}

/**
 * The bytes of the regular file at `path`, read without blocking.
 * @throws when it is missing, not a regular file, or larger than `maxBytes`.
 */
export function readRegularFile(path: string, maxBytes: number, flags: number = READ_FLAGS): Buffer {
  const fd = openSync(path, flags);
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile() || stats.size > maxBytes) {
      throw new StateIoError(`${path} is not a regular file of at most ${maxBytes} bytes; remove it, portlease makes it anew.`, undefined);
    }
    return readFileSync(fd);
  } finally {
    closeQuietly(fd);
  }
}

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
