/**
 * The filesystem side of the lock: the synchronous `fs` proper-lockfile is given, and what
 * tells one lock directory from the next.
 */
import { lstatSync, mkdirSync, realpathSync, rmdirSync, type Stats, statSync, utimesSync } from 'node:fs';

type Callback<T> = (error: NodeJS.ErrnoException | null, value?: T) => void;

function callSync<T>(work: () => T, callback: Callback<T>): void {
  let result: T;
  try {
    result = work();
  } catch (error) {
    callback(error as NodeJS.ErrnoException);
    return;
  }
  callback(null, result);
}

/**
 * The filesystem proper-lockfile sees: node's synchronous calls behind its callback
 * interface, so a lock attempt completes within the call with no thread-pool round trips.
 * It is one long-lived object because proper-lockfile caches the filesystem's mtime
 * precision on the `fs` it is given; its own `lockSync` builds a new one per call and
 * probes again every time.
 */
// What proper-lockfile's stat found right after our own mkdir made the lock directory: the
// identity a new holder records, without a second stat of the same directory.
let justMade: string | undefined;
let madeAndStatted: { path: string; stats: Stats } | undefined;

export const synchronousFs = {
  mkdir: (path: string, callback: Callback<void>) =>
    callSync(() => {
      justMade = undefined;
      mkdirSync(path);
      justMade = path;
    }, callback),
  rmdir: (path: string, callback: Callback<void>) => callSync(() => rmdirSync(path), callback),
  // proper-lockfile's exit hook removes a lock still held at exit with this.
  rmdirSync: (path: string) => rmdirSync(path),
  stat: (path: string, callback: Callback<unknown>) =>
    callSync(() => {
      const stats = statSync(path);
      if (path === justMade) madeAndStatted = { path, stats };
      justMade = undefined;
      return stats;
    }, callback),
  realpath: (path: string, callback: Callback<string>) => callSync(() => realpathSync(path), callback),
  utimes: (path: string, atime: Date, mtime: Date, callback: Callback<void>) => callSync(() => utimesSync(path, atime, mtime), callback),
};

/** The filesystem for forgetting a lock that is no longer ours: everything but rmdir. */
export const forgetfulFs = { ...synchronousFs, rmdir: (_path: string, callback: Callback<void>) => callback(null) };

/** The stats proper-lockfile took of `path` right after our own mkdir made it, once; else `undefined`. */
export function lockIdentityJustMade(path: string): Stats | undefined {
  const statted = madeAndStatted?.path === path ? madeAndStatted.stats : undefined;
  madeAndStatted = undefined;
  return statted;
}

/**
 * What tells one lock directory from the next: a re-made directory has a new change time,
 * whatever its inode number (the fraction of `ctimeMs` keeps sub-microsecond precision).
 */
export function identityOf(path: string): string | undefined {
  let stats: Stats;
  try {
    stats = lstatSync(path);
  } catch {
    return undefined;
  }
  return identityOfStats(stats);
}

/** The identity of a lock directory from its stats (see {@link identityOf}). */
export function identityOfStats(stats: Stats): string {
  return `${stats.ino}:${stats.ctimeMs}:${stats.mtimeMs}`;
}
