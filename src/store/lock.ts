import { lstatSync, mkdirSync, rmdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import lockfile from 'proper-lockfile';
import { LockTimeoutError, STATE_IO_ADVICE, StateIoError } from '../base/errors.js';
import { errnoCode } from '../base/fs.js';
import { warnOnce } from '../base/warnings.js';
import { forgetfulFs, identityOf, identityOfStats, lockIdentityJustMade, synchronousFs } from './lock-fs.js';

/** Settings of a {@link StateLock}. */
export interface LockSettings {
  /** Give up waiting after this long. */
  timeoutMs: number;
  /** A lock that stays unchanged this long, by the waiter's own clock, belongs to a stalled or crashed holder and may be broken. */
  staleMs: number;
}

// proper-lockfile's own stale takeover compares this host's clock with the lock's mtime and
// is check-then-remove: two waiters that both see the same stale lock can both end up
// holding it. It is disabled with a stale time it never reaches; see breakIfStale instead.
const NEVER_STALE_MS = 2 ** 30;
// See StateLock.isAncient.
const ANCIENT_LOCK_MS = 60_000;

function warnCompromised(lockPath: string, error: Error): void {
  // The default handler throws from a timer and kills the host process; a warning is
  // enough, since every write is fenced in the state file itself.
  warnOnce(`lock-compromised:${lockPath}`, `portlease: lock ${lockPath} was compromised: ${error.message}`, 'PORTLEASE_LOCK_COMPROMISED');
}

/** A waiter that the holder can wake, or serve without handing it the lock (see src/queue/). */
export interface LockWaiter {
  /**
   * Waits until trying the lock again is worth it, at most `remainingMs`; `undefined` where it
   * cannot, and the lock's own short sleeps are used.
   */
  wait(remainingMs: number): Promise<void> | undefined;
  /** Whether to stop waiting without the lock: what the caller waited for was done by another holder. */
  readonly done: boolean;
}

/** How one call waits for the lock. */
export interface WaitOptions {
  /** Waits between attempts instead of the lock's own short sleeps (see {@link LockWaiter}). */
  waiter?: LockWaiter | undefined;
  /** How long to wait at most (default: the lock's setting). */
  timeoutMs?: number | undefined;
}

/** A held lock. */
export interface HeldLock {
  /** Whether the lock directory is still the one this holder created (nobody broke it). */
  isStillHeld(): boolean;
  /** Releases the lock; never throws. */
  release(): void;
}

/**
 * The cross-process lock guarding one state file: a proper-lockfile lock directory next
 * to it, plus an in-process queue so the calls of one process wait their turn instead of
 * contending with each other. It keeps writers apart; it is not what makes a paused
 * holder's write harmless (the state file's fencing is).
 */
export class StateLock {
  /** Path of the lock directory. */
  readonly lockPath: string;
  private readonly target: string;
  private readonly settings: LockSettings;
  private queue: Promise<unknown> = Promise.resolve();
  /** When this process first saw each lock directory version (see isStale). */
  private readonly sightings = new Map<string, { identity: string; since: number }>();
  private lastBreakFailure: string | undefined;

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
  async runExclusive<T>(critical: (lock: HeldLock) => T): Promise<T> {
    const outcome = await this.runExclusiveUnlessServed(critical);
    return (outcome as { value: T }).value;
  }

  /**
   * {@link runExclusive}, waiting through `options.waiter` instead of sleeping, and giving up
   * without the lock once `waiter.done` (what the caller waited for was done by another
   * holder); `options.timeoutMs` overrides the settings' for this call.
   */
  runExclusiveUnlessServed<T>(critical: (lock: HeldLock) => T, options: WaitOptions = {}): Promise<{ value: T } | undefined> {
    const result = this.queue.then(async () => {
      const held = await this.acquire(options.waiter, options.timeoutMs ?? this.settings.timeoutMs);
      if (held === undefined) return undefined;
      try {
        return { value: critical(held) };
      } finally {
        held.release();
      }
    });
    this.queue = result.catch(() => undefined);
    return result;
  }

  /** One attempt to take the lock, without waiting and without yielding: for process exit. */
  tryAcquireSync(): HeldLock | undefined {
    let release: () => void;
    try {
      // lockSync probes the mtime precision on every call; acceptable once, at exit.
      release = lockfile.lockSync(this.target, {
        realpath: false,
        retries: 0,
        stale: NEVER_STALE_MS,
        onCompromised: (error) => warnCompromised(this.lockPath, error),
      });
    } catch (error) {
      if (errnoCode(error) === 'ELOCKED') return undefined;
      throw new StateIoError(`Cannot take the lock ${this.lockPath}: ${(error as Error).message}. ${STATE_IO_ADVICE}`, error);
    }
    return this.held(() => release());
  }

  private async acquire(waiter: LockWaiter | undefined, timeoutMs: number): Promise<HeldLock | undefined> {
    const deadline = performance.now() + timeoutMs;
    for (let attempt = 0; ; attempt++) {
      if (waiter?.done === true) return undefined;
      const held = await this.attempt();
      if (held !== undefined) return held;
      if (this.breakIfStale()) continue;
      const remaining = deadline - performance.now();
      if (remaining <= 0) throw new LockTimeoutError(this.lockPath, this.settings.timeoutMs, this.lastBreakFailure);
      const woken = waiter?.wait(remaining);
      if (woken !== undefined) {
        await woken;
        continue;
      }
      // Short randomized waits: a warm holder keeps the lock well under a millisecond, and
      // randomness keeps many waiters from retrying in lockstep.
      const ceiling = Math.min(2 + attempt, 12);
      await sleep(Math.min(remaining, 1 + Math.random() * ceiling));
    }
  }

  private async attempt(): Promise<HeldLock | undefined> {
    let release: () => Promise<void>;
    try {
      release = await lockfile.lock(this.target, {
        realpath: false,
        retries: 0,
        stale: NEVER_STALE_MS,
        fs: synchronousFs,
        onCompromised: (error) => warnCompromised(this.lockPath, error),
      });
    } catch (error) {
      if (errnoCode(error) === 'ELOCKED') return undefined;
      throw new StateIoError(`Cannot take the lock ${this.lockPath}: ${(error as Error).message}. ${STATE_IO_ADVICE}`, error);
    }
    // The synchronous fs makes the returned promise settle within the call; nothing waits on it.
    return this.held(() => void release().catch(() => undefined));
  }

  private held(release: () => void): HeldLock {
    const statted = lockIdentityJustMade(this.lockPath);
    // A directory is never a symlink here (mkdir made it), so stat and lstat agree.
    const identity = statted === undefined ? identityOf(this.lockPath) : identityOfStats(statted);
    const isStillHeld = (): boolean => identity !== undefined && identityOf(this.lockPath) === identity;
    return {
      isStillHeld,
      release: () => {
        // A holder that stalled past staleMs may have had its lock broken and re-taken by
        // another process: removing the directory now would remove that holder's lock. Such a
        // holder only lets proper-lockfile forget the lock (a no-op rmdir).
        if (isStillHeld()) release();
        else lockfile.unlock(this.target, { realpath: false, fs: forgetfulFs }).catch(() => undefined);
      },
    };
  }

  /**
   * Breaks the lock if it has stayed the same directory for `staleMs` by this process's
   * clock (its holder crashed or is paused). Only one process breaks at a time, under a second
   * short-lived lock, and it removes the directory only if it is still the version it saw go
   * stale, so a lock that another waiter has just broken and re-taken is never removed.
   * Returns whether the lock was removed, so that retrying at once makes sense.
   */
  private breakIfStale(): boolean {
    const staleIdentity = this.staleIdentity(this.lockPath);
    if (staleIdentity === undefined) return false;
    const breakerPath = `${this.lockPath}.break`;
    try {
      mkdirSync(breakerPath);
    } catch (error) {
      // Another process is breaking it; a breaker that itself crashed is cleared once stale.
      if (errnoCode(error) === 'EEXIST' && this.staleIdentity(breakerPath) !== undefined) this.removeQuietly(breakerPath);
      else if (errnoCode(error) !== 'EEXIST') this.lastBreakFailure = `cannot create ${breakerPath}: ${(error as Error).message}`;
      return false;
    }
    try {
      return identityOf(this.lockPath) === staleIdentity && this.removeQuietly(this.lockPath);
    } finally {
      this.removeQuietly(breakerPath);
    }
  }

  /**
   * The identity of the directory at `path` if this process has seen it unchanged for
   * `staleMs` of its own monotonic time. No clock is compared with the filesystem's: a
   * host clock ahead of the file server's, or stepped while a lock is held, changes nothing.
   */
  private staleIdentity(path: string): string | undefined {
    const identity = identityOf(path);
    if (identity === undefined) {
      this.sightings.delete(path);
      return undefined;
    }
    const now = performance.now();
    const seen = this.sightings.get(path);
    if (seen?.identity !== identity) {
      this.sightings.set(path, { identity, since: now });
      return undefined;
    }
    if (now - seen.since >= this.settings.staleMs) return identity;
    // A caller whose lockTimeoutMs is below staleMs would never see a crashed holder's lock go
    // stale: a lock also counts as stale once it is far older than any critical section by
    // the wall clock AND this process saw it unchanged for half its own wait, so that a host
    // clock far ahead of the filesystem's alone never breaks a live lock at first sight.
    const patience = Math.min(this.settings.staleMs, this.settings.timeoutMs / 2);
    return now - seen.since >= patience && this.isAncient(path) ? identity : undefined;
  }

  private isAncient(path: string): boolean {
    try {
      return Date.now() - lstatSync(path).mtimeMs > Math.max(ANCIENT_LOCK_MS, 10 * this.settings.staleMs);
    } catch {
      return false;
    }
  }

  /** Removes a lock directory; says why not, for the timeout message, instead of retrying at once forever. */
  private removeQuietly(path: string): boolean {
    try {
      rmdirSync(path);
      this.sightings.delete(path);
      return true;
    } catch (error) {
      if (errnoCode(error) === 'ENOENT') return true;
      this.lastBreakFailure = `cannot remove the stale lock ${path}: ${(error as Error).message}`;
      return false;
    }
  }
}
