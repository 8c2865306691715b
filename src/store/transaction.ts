import { lstatSync } from 'node:fs';
import { StateIoError } from '../base/errors.js';
import { currentBootId } from '../base/proc.js';
import { type LockSettings, StateLock, type WaitOptions } from './lock.js';
import { StateStore } from './store.js';
import type { StateData } from './format.js';
import { prepareStateDir, type StatePaths } from './state-dir.js';
import { debugLetGo } from '../base/debug.js';

/** What a change made of the state: whether to write it back, and what to hand the caller. */
export interface ChangeOutcome<T> {
  changed: boolean;
  result: T;
}

/**
 * A change to the state: synchronous, and free of effects outside `state`, because it runs
 * again on a fresh copy whenever its first write turns out to be void.
 */
export type StateChange<T> = (state: StateData) => ChangeOutcome<T>;

// Each void write means another writer's line got in first, so every retry follows real progress.
const MAX_ATTEMPTS = 8;

/** What a directory check depends on: which inode, and its type, mode and owner. */
function directoryIdentity(dir: string): string | undefined {
  try {
    const stats = lstatSync(dir);
    return `${stats.dev}:${stats.ino}:${stats.mode}:${stats.uid}`;
  } catch {
    return undefined; // missing or unreadable: the full check says which, with a typed error
  }
}

function isMissingStateDir(error: unknown): boolean {
  return error instanceof StateIoError && (error.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

/**
 * Work a lock holder does for processes waiting on it (see src/queue/): inside each
 * critical section, after the holder's own change; after each release, a wake-up.
 */
export interface QueueService {
  /**
   * Inside the lock: records in `state` what waiting processes asked for. Returns whether
   * `state` changed and what to do once that is written (or, unchanged, at once).
   */
  serve(state: StateData): { changed: boolean; settle: () => void } | undefined;
  /** After the lock is released: wakes a process still waiting. */
  nudge(): void;
}

/**
 * Read-change-write of one state file: the lock, the store, the boot check and the state
 * directory, and the retry when a write is void. Every change the allocator makes goes
 * through {@link run}; nothing else writes the state file.
 */
export class StateTransactions {
  private readonly paths: StatePaths;
  private readonly lock: StateLock;
  private readonly store: StateStore;
  /** Identity of the directory as last checked (see {@link prepare}). */
  private prepared: string | undefined;
  /** What each holder does for the processes waiting (see {@link serveQueue}). */
  private service: QueueService | undefined;

  constructor(paths: StatePaths, settings: LockSettings) {
    this.paths = paths;
    this.lock = new StateLock(paths.stateFile, settings);
    this.store = new StateStore(paths.stateFile);
  }

  /**
   * Creates the state directory if needed and checks it is safe; checks again whenever it is
   * no longer the directory checked (swapped for a symlink or another directory, its mode or
   * owner changed), so a running process refuses it as a new one would.
   */
  prepare(): void {
    const current = directoryIdentity(this.paths.dir);
    if (this.prepared !== undefined && current === this.prepared) return;
    prepareStateDir(this.paths.dir);
    this.prepared = directoryIdentity(this.paths.dir);
  }

  /** From now on, every critical section also serves `service` (see {@link QueueService}). */
  serveQueue(service: QueueService): void {
    this.service = service;
  }

  /**
   * Runs `change` on the current state under the lock and writes the state back when it
   * changed (or when reading it dropped claims of an earlier boot). If the write is void
   * (this process was paused while holding the lock and another writer got in), the change
   * runs again on the fresh state: a result is returned only once its write was accepted.
   */
  async run<T>(change: StateChange<T>, wait: Omit<WaitOptions, 'waiter'> = {}): Promise<T> {
    return (await this.runUnlessServed(change, wait))!.result;
  }

  /**
   * {@link run}, waiting for the lock as `wait` says; resolves to `undefined`, without running
   * `change`, once `wait.waiter.done` (another holder did what the caller asked).
   */
  async runUnlessServed<T>(change: StateChange<T>, wait: WaitOptions): Promise<{ result: T } | undefined> {
    this.prepare();
    for (let attempt = 1; ; attempt++) {
      try {
        const held = await this.lock.runExclusiveUnlessServed(() => this.apply(change), wait);
        if (held === undefined) return undefined;
        this.service?.nudge();
        if (held.value.accepted) return { result: held.value.result };
      } catch (error) {
        this.service?.nudge();
        if (!isMissingStateDir(error) || attempt >= MAX_ATTEMPTS) throw error;
        // A temp cleaner (systemd-tmpfiles, tmpreaper) removed the directory under a
        // long-running process: create it again rather than fail every claim from now on.
        this.prepared = undefined;
        this.prepare();
      }
      if (attempt >= MAX_ATTEMPTS) {
        throw new StateIoError(
          `Could not record a change in ${this.paths.stateFile}: ${MAX_ATTEMPTS} writes in a row were overtaken by other writers. Nothing was changed. Try again; if it keeps happening, give this job a state directory of its own.`,
          undefined,
        );
      }
    }
  }

  /** {@link run} without waiting: only if the lock is free right now, for process exit. Never throws. */
  runNowIfFree(change: StateChange<unknown>): void {
    try {
      const held = this.lock.tryAcquireSync();
      if (held === undefined) return;
      try {
        this.apply(change);
      } finally {
        held.release();
        this.service?.nudge();
      }
    } catch (error) {
      // Exit must not fail because of us; reaping covers what was left.
      debugLetGo('store/transaction', error);
    }
  }

  /**
   * The state without the lock: every change is one whole line, so a reader sees each change
   * entirely or not yet. A corrupt file reads as empty here and is repaired by the next writer.
   */
  read(): StateData {
    this.prepare();
    return this.store.load({ repair: false });
  }

  /**
   * Once per process, before it contends: reads the state into this process's copy (so the
   * locked read only has the lines appended since). Errors are left for the locked read to
   * report. Returns the state read.
   */
  prefetch(): StateData | undefined {
    if (this.store.hasSnapshot) return undefined;
    try {
      return this.read();
    } catch {
      return undefined;
    }
  }

  /**
   * Whether `state` belongs to the running boot: always where the platform has no boot id,
   * and where the file names none (written where the boot id could not be read), since
   * nothing says its claims are older.
   */
  isCurrentBoot(state: StateData): boolean {
    const bootId = currentBootId();
    return bootId === undefined || state.bootId === undefined || state.bootId === bootId;
  }

  private apply<T>(change: StateChange<T>): { accepted: boolean; result: T } {
    const state = this.store.load({ repair: true });
    const bootChanged = !this.isCurrentBoot(state);
    if (bootChanged) {
      // Every owner of an earlier boot is gone, and so are the servers its TTL claims were for.
      state.claims = [];
      const bootId = currentBootId();
      if (bootId === undefined) delete state.bootId;
      else state.bootId = bootId;
    }
    const { changed, result } = change(state);
    const served = this.service?.serve(state);
    if (!changed && !bootChanged && served?.changed !== true) {
      served?.settle();
      return { accepted: true, result };
    }
    const accepted = this.store.commit(state);
    // Only a written claim may wake its owner; after a void write the next holder serves it.
    if (accepted) served?.settle();
    return { accepted, result };
  }
}
