import { lstatSync, mkdirSync, realpathSync, rmdirSync, type Stats, statSync, utimesSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import lockfile from 'proper-lockfile/lib/lockfile.js';
import { LockTimeoutError, StateIoError } from './errors.js';

/** Settings of a {@link StateLock}. */
export interface LockSettings {
  /** Give up waiting after this long. */
  timeoutMs: number;
  /** A lock untouched for this long belongs to a crashed holder and may be broken. */
  staleMs: number;
}

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
 * interface. Every lock attempt therefore completes within the call, with no thread-pool
 * round trips, and this one object keeps proper-lockfile's cached mtime precision across
 * attempts (its `lockSync` builds a new adapter per call and re-probes every time, which
 * costs two syscalls and stamps the lock up to a second into the future).
 */
let precisionProbed = false;
// proper-lockfile stats the lock right after creating it; that stat is the lock's identity.
let lastStat: Stats | undefined;
const synchronousFs = {
  mkdir: (path: string, callback: Callback<void>) => callSync(() => void mkdirSync(path), callback),
  rmdir: (path: string, callback: Callback<void>) => callSync(() => rmdirSync(path), callback),
  stat: (path: string, callback: Callback<Stats>) =>
    callSync(() => {
      lastStat = statSync(path);
      return lastStat;
    }, callback),
  realpath: (path: string, callback: Callback<string>) => callSync(() => realpathSync(path), callback),
  utimes: (path: string, atime: Date, mtime: Date, callback: Callback<void>) => {
    precisionProbed = true;
    callSync(() => utimesSync(path, atime, mtime), callback);
  },
};

/** The filesystem for forgetting a lock that is no longer ours: everything but rmdir. */
const forgetfulFs = { ...synchronousFs, rmdir: (_path: string, callback: Callback<void>) => callback(null) };

// proper-lockfile's own stale takeover is check-then-remove: two waiters that both see the
// same stale lock can both end up holding it. It is disabled with a stale time it never
// reaches (and an update period below setTimeout's limit); see breakIfStale instead.
const NEVER_STALE_MS = 2 ** 30;

const compromisedWarnings = new Set<string>();
function warnCompromised(lockPath: string, error: Error): void {
  // The default handler throws from a timer and kills the host process; a warning is enough,
  // since every write re-checks that the lock is still ours.
  if (compromisedWarnings.has(lockPath)) return;
  compromisedWarnings.add(lockPath);
  process.emitWarning(`portlease: lock ${lockPath} was compromised: ${error.message}`, { code: 'PORTLEASE_LOCK_COMPROMISED' });
}

/** A held lock. */
export interface HeldLock {
  /** Whether the lock directory is still the one this holder created (nobody broke it). */
  isStillHeld(): boolean;
  /** Releases the lock; never throws. */
  release(): void;
}

function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}

/**
 * The cross-process lock guarding one state file: a proper-lockfile lock directory next
 * to it, plus an in-process queue so the calls of one process wait their turn instead of
 * contending with each other.
 */
export class StateLock {
  /** Path of the lock directory. */
  readonly lockPath: string;
  private readonly target: string;
  private readonly settings: LockSettings;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(target: string, settings: LockSettings) {
    this.target = target;
    this.lockPath = `${target}.lock`;
    this.settings = settings;
  }

  /**
   * Runs `critical` with the lock held, after the calls queued before it in this process.
   * `critical` is synchronous on purpose: the lock is held for as short a time as possible
   * and nothing else of this process can run in between.
   */
  runExclusive<T>(critical: (lock: HeldLock) => T): Promise<T> {
    const result = this.queue.then(async () => {
      const held = await this.acquire();
      try {
        return critical(held);
      } finally {
        held.release();
      }
    });
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** One attempt to take the lock, without waiting: for process exit. */
  tryAcquireSync(): HeldLock | undefined {
    return this.attempt();
  }

  private async acquire(): Promise<HeldLock> {
    const deadline = Date.now() + this.settings.timeoutMs;
    for (let attempt = 0; ; attempt++) {
      const held = this.attempt();
      if (held !== undefined) return held;
      if (this.breakIfStale()) continue;
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new LockTimeoutError(this.lockPath, this.settings.timeoutMs);
      // Short randomized waits: a warm holder keeps the lock well under a millisecond, and
      // randomness keeps many waiters from retrying in lockstep.
      const ceiling = Math.min(2 + attempt, 12);
      await sleep(Math.min(remaining, 1 + Math.random() * ceiling));
    }
  }

  private attempt(): HeldLock | undefined {
    let outcome: { error: NodeJS.ErrnoException | null; release?: (callback?: Callback<void>) => void } | undefined;
    lockfile.lock(
      this.target,
      {
        realpath: false,
        retries: 0,
        stale: NEVER_STALE_MS,
        fs: synchronousFs,
        onCompromised: (error) => warnCompromised(this.lockPath, error),
      },
      (error, release) => {
        outcome = release === undefined ? { error } : { error, release };
      },
    );
    if (outcome === undefined) throw new Error('proper-lockfile did not answer synchronously');
    if (outcome.error !== null) {
      if (outcome.error.code === 'ELOCKED') return undefined;
      throw new StateIoError(`Cannot take the lock ${this.lockPath}: ${outcome.error.message}`, outcome.error);
    }
    const release = outcome.release!;
    let identity = lastStat!;
    if (precisionProbed) {
      // The one-time precision probe stamps the lock into the future; make its age honest.
      precisionProbed = false;
      const now = new Date();
      utimesSync(this.lockPath, now, now);
      identity = statSync(this.lockPath);
    }
    const isStillHeld = (): boolean => {
      try {
        const current = statSync(this.lockPath);
        return current.ino === identity.ino && current.mtimeMs === identity.mtimeMs;
      } catch {
        return false;
      }
    };
    return {
      isStillHeld,
      release: () => {
        // A holder that stalled past staleMs may have had its lock broken and re-taken by
        // another process: removing the directory now would remove that holder's lock. Such a
        // holder only lets proper-lockfile forget the lock (a no-op rmdir).
        if (isStillHeld()) release(() => undefined);
        else lockfile.unlock(this.target, { realpath: false, fs: forgetfulFs }, () => undefined);
      },
    };
  }

  /**
   * Breaks the lock if its holder has not touched it for `staleMs` (it crashed inside the
   * lock). Only one process breaks at a time, under a second short-lived lock, and it checks
   * the age again under that lock, so a lock that another waiter has just broken and
   * re-taken is never removed. Returns whether it is worth retrying at once.
   */
  private breakIfStale(): boolean {
    if (!this.isStale(this.lockPath)) return false;
    const breakerPath = `${this.lockPath}.break`;
    try {
      mkdirSync(breakerPath);
    } catch (error) {
      // Another process is breaking it; a breaker that itself crashed is cleared once stale.
      if (errnoCode(error) === 'EEXIST' && this.isStale(breakerPath)) rmdirQuietly(breakerPath);
      return false;
    }
    try {
      if (this.isStale(this.lockPath)) rmdirQuietly(this.lockPath);
    } finally {
      rmdirQuietly(breakerPath);
    }
    return true;
  }

  private isStale(path: string): boolean {
    try {
      return Date.now() - lstatSync(path).mtimeMs > this.settings.staleMs;
    } catch {
      return false;
    }
  }
}

function rmdirQuietly(path: string): void {
  try {
    rmdirSync(path);
  } catch {
    // Already gone.
  }
}
