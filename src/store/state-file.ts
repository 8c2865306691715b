/**
 * Low-level reads of state files: the generation id a file names in its first bytes, and the
 * error that names what failed on which file.
 */
import { fstatSync, openSync, readSync } from 'node:fs';
import { STATE_IO_ADVICE, StateIoError } from '../base/errors.js';
import { closeQuietly, READ_FLAGS } from '../base/fs.js';
import { HEADER_PREFIX } from './format.js';
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

/** `error` as a {@link StateIoError} naming what failed on which file (kept as is if it is one). */
export function ioError(action: string, path: string, error: unknown): StateIoError {
  return error instanceof StateIoError
    ? error
    : new StateIoError(`Cannot ${action} the state file ${path}: ${(error as Error).message}. ${STATE_IO_ADVICE}`, error);
}
