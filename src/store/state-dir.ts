import { lstatSync, mkdirSync, type Stats } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { STATE_IO_ADVICE, StateIoError, UnsafeStateDirError } from '../base/errors.js';

/** Where one host's claims live inside a state directory. */
export interface StatePaths {
  /** The state directory itself (absolute). */
  dir: string;
  /** The state file (JSON lines) of claims for this host. */
  stateFile: string;
  /** The socket table this host's processes share (see socket-table.ts). */
  socketCacheFile: string;
  /** Which ports each label of a sticky claim held last (see sticky-memory.ts). */
  stickyFile: string;
  /** Claim requests waiting for the lock holder (see src/queue/). */
  queueDir: string;
  /** Which keeper process holds the port tokens of each claim that has one (see claims/keeper.ts). */
  keeperDir: string;
}

/** Paths of the state of `host` (default: this machine) inside `dir`. */
export function statePaths(dir: string, host: string = hostname()): StatePaths {
  // One file per host, so a directory shared over NFS never mixes two machines' ports.
  const safeHost = host.replace(/[^\w.-]/g, '_').slice(0, 64) || 'localhost';
  const absoluteDir = resolve(dir);
  return {
    dir: absoluteDir,
    stateFile: join(absoluteDir, `claims-${safeHost}.jsonl`),
    socketCacheFile: join(absoluteDir, `sockets-${safeHost}.json`),
    stickyFile: join(absoluteDir, `sticky-${safeHost}.json`),
    queueDir: join(absoluteDir, `queue-${safeHost}`),
    keeperDir: join(absoluteDir, `keepers-${safeHost}`),
  };
}

/** The mode of a file portlease creates in the state directory: only its user reads and writes it. */
export const STATE_FILE_MODE = 0o600;

/** The mode of a directory portlease creates: only its user may enter it. */
export const STATE_DIR_MODE = 0o700;

const GROUP_OR_OTHER_WRITE = 0o022;
const STICKY = 0o1000;
const canCheckOwners = typeof process.getuid === 'function';

function octal(mode: number): string {
  return `0${(mode & 0o7777).toString(8)}`;
}

function lstatOrThrow(path: string): Stats {
  try {
    return lstatSync(path);
  } catch (error) {
    throw new StateIoError(`Cannot inspect the state directory ${path}: ${(error as Error).message}. ${STATE_IO_ADVICE}`, error);
  }
}

/**
 * Creates `dir` and any missing parents, one level at a time (mode 0700). Not Node's
 * recursive mkdir: under /proc it never returns (Node 20 retries ENOENT there forever, at full
 * CPU, deaf to SIGTERM); one level at a time fails at once, with the level that cannot be made.
 */
function makeDirectories(dir: string): void {
  const missing: string[] = [];
  for (let path = dir; ; path = dirname(path)) {
    if (lstatSync(path, { throwIfNoEntry: false }) !== undefined) break;
    missing.push(path);
    if (dirname(path) === path) break;
  }
  for (const path of missing.reverse()) {
    try {
      mkdirSync(path, { mode: STATE_DIR_MODE });
    } catch (error) {
      // Made meanwhile, or something that is not a directory is in the way: refused below, as
      // unsafe, by what it is.
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw new StateIoError(
        `Cannot create the state directory ${dir} (at ${path}): ${(error as Error).message}. ${STATE_IO_ADVICE}`,
        error,
      );
    }
  }
}

function checkParent(dir: string, uid: number): void {
  const parent = dirname(dir);
  if (parent === dir) return;
  const stats = lstatOrThrow(parent);
  // Whoever can write the parent can swap our directory for theirs, unless the sticky bit stops them.
  if (stats.uid !== uid && stats.uid !== 0) {
    throw new UnsafeStateDirError(dir, `its parent ${parent} is owned by uid ${stats.uid}, not by you (uid ${uid}) or root`);
  }
  if ((stats.mode & GROUP_OR_OTHER_WRITE) !== 0 && (stats.mode & STICKY) === 0) {
    throw new UnsafeStateDirError(dir, `its parent ${parent} is writable by others (mode ${octal(stats.mode)}) without the sticky bit`);
  }
}

/**
 * Creates the state directory (mode 0700) if needed and refuses one that another user
 * could tamper with: a symlink, a non-directory, owned by someone else, or writable by
 * group or others. Other users never share a state directory: what keeps their claims apart
 * is the network namespace's port tokens (ports/port-tokens.ts).
 */
export function prepareStateDir(dir: string): void {
  makeDirectories(resolve(dir));
  const stats = lstatOrThrow(dir);
  if (stats.isSymbolicLink()) throw new UnsafeStateDirError(dir, 'it is a symbolic link');
  if (!stats.isDirectory()) throw new UnsafeStateDirError(dir, 'it is not a directory');
  if (!canCheckOwners) return;
  const uid = process.getuid!();
  if (stats.uid !== uid) {
    throw new UnsafeStateDirError(dir, `it is owned by uid ${stats.uid}, not by you (uid ${uid})`);
  }
  if ((stats.mode & GROUP_OR_OTHER_WRITE) !== 0) {
    throw new UnsafeStateDirError(dir, `it is writable by group or others (mode ${octal(stats.mode)}); run chmod 700 on it`);
  }
  checkParent(dir, uid);
}
