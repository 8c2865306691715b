/**
 * Claim requests waiting for the lock. A process that wants a claim leaves its request in the
 * queue directory before it tries the lock; whoever holds the lock records the queued requests
 * together with its own change, then removes their files, which wakes each requester (a file
 * watch, no polling). A burst of P processes thus needs a few lock hand-offs instead of P, and
 * the waiters sleep instead of retrying. The queue is only a shortcut: a requester that is not
 * served in time takes the lock itself, so nothing depends on a holder that crashed or paused.
 */
import {
  chmodSync,
  closeSync,
  type FSWatcher,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  renameSync,
  utimesSync,
  watch,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { LockWaiter } from './lock.js';
import { pausePoint } from './pause-points.js';
import { randomToken } from './state-format.js';
import { errnoCode, readRegularFile, unlinkQuietly } from './state-file.js';

/** What a queued request file holds: opaque to the queue, checked by whoever serves it. */
export interface QueuedFile {
  /** Path of the request file. */
  readonly path: string;
  /** The request, parsed; `undefined` if it could not be read or parsed. */
  readonly body: unknown;
}

// Suffix of a request file; a file being written has a name of another shape until it is renamed.
const REQUEST_SUFFIX = '.req';
const WRITING_PREFIX = '.writing-';
// What one critical section serves at most, so a flood of requests cannot hold the lock long.
const MAX_SERVED_PER_TURN = 256;
// A request file bigger than this is not one portlease wrote.
const MAX_REQUEST_BYTES = 64 * 1024;
// A half-written file left by a process killed while writing it is removed after this long.
const LEFTOVER_MS = 60_000;

// A queued waiter retries the lock on its own this often (randomized ±50 %), for holders that
// crash, or that wake nobody (another version of portlease sharing the directory).
const FALLBACK_RETRY_MS = 40;

// O_EXCL with O_CREAT: a name planted in a shared directory (a symlink, a FIFO) makes the open fail.
const NEW_FILE_FLAGS = 'wx';

/**
 * The queue directory of one state file. Every method is synchronous and never throws: a queue
 * that cannot be used only means each process takes the lock itself, as without a queue.
 */
export class ClaimQueue {
  /** Path of the queue directory. */
  readonly dir: string;
  private readonly fileMode: number;
  private readonly dirMode: number;
  private usable: boolean | undefined;

  constructor(dir: string, modes: { file: number; dir: number }) {
    this.dir = dir;
    this.fileMode = modes.file;
    this.dirMode = modes.dir;
  }

  /**
   * Leaves `body` (JSON-serializable) in the queue under `name` (a claim id: letters, digits,
   * `.`, `-`, `_`). Returns the ticket to wait on, or `undefined` where the queue cannot be used.
   */
  enqueue(name: string, body: unknown): QueueTicket | undefined {
    if (!/^[\w.-]{1,100}$/.test(name) || !this.ensureDir()) return undefined;
    // Named by time first, so a holder serves (and nudges) the oldest requests first.
    const path = join(this.dir, `${Date.now().toString(36).padStart(9, '0')}-${name}${REQUEST_SUFFIX}`);
    const writing = join(this.dir, `${WRITING_PREFIX}${randomToken()}`);
    try {
      const fd = openSync(writing, NEW_FILE_FLAGS, this.fileMode);
      try {
        writeFileSync(fd, JSON.stringify(body));
      } finally {
        closeSync(fd);
      }
      // Whole or not at all: a holder never reads a request half written.
      renameSync(writing, path);
    } catch {
      unlinkQuietly(writing);
      return undefined;
    }
    return new QueueTicket(path);
  }

  /** Inside the lock: the requests waiting, oldest first (at most a few hundred per turn). */
  pending(): QueuedFile[] {
    const names = this.requestNames();
    const files: QueuedFile[] = [];
    for (const name of names.slice(0, MAX_SERVED_PER_TURN)) {
      const path = join(this.dir, name);
      let body: unknown;
      try {
        const bytes = readRegularFile(path);
        body = bytes.length > MAX_REQUEST_BYTES ? undefined : JSON.parse(bytes.toString('utf8'));
      } catch (error) {
        if (errnoCode(error) === 'ENOENT') continue; // withdrawn meanwhile
        body = undefined;
      }
      files.push({ path, body });
    }
    return files;
  }

  /**
   * Removes request files once their requests are settled (recorded, or left to their owners):
   * each owner wakes up and looks for its claim in the state file.
   */
  settle(files: Iterable<QueuedFile>): void {
    pausePoint('settle');
    for (const file of files) unlinkQuietly(file.path);
  }

  /**
   * After the lock is released: touches the oldest request still waiting, so its owner tries
   * the lock now (and serves the others) instead of at its next fallback retry. One, not all:
   * waking every waiter would have them all contend for the lock at once.
   */
  nudgeOldest(): void {
    const oldest = this.requestNames()[0];
    if (oldest === undefined) return;
    const now = new Date();
    try {
      utimesSync(join(this.dir, oldest), now, now);
    } catch {
      // Withdrawn meanwhile, or not ours to touch: its owner retries by itself.
    }
  }

  private requestNames(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    const requests: string[] = [];
    for (const name of names) {
      if (name.endsWith(REQUEST_SUFFIX)) requests.push(name);
      else if (name.startsWith(WRITING_PREFIX)) this.removeIfLeftOver(join(this.dir, name));
    }
    return requests.sort();
  }

  private removeIfLeftOver(path: string): void {
    try {
      if (Date.now() - lstatSync(path).mtimeMs > LEFTOVER_MS) unlinkQuietly(path);
    } catch {
      // Renamed or removed meanwhile.
    }
  }

  /** Creates the queue directory once; refuses a symlink or anything but a directory there. */
  private ensureDir(): boolean {
    if (this.usable !== undefined) return this.usable;
    try {
      mkdirSync(this.dir, { mode: this.dirMode });
      // The umask must not keep the other users of a shared directory out.
      chmodSync(this.dir, this.dirMode);
    } catch (error) {
      if (errnoCode(error) !== 'EEXIST') return (this.usable = false);
    }
    try {
      this.usable = lstatSync(this.dir).isDirectory();
    } catch {
      this.usable = false;
    }
    return this.usable;
  }
}

/**
 * A request waiting in the queue, from its owner's side: wait for a holder to settle it (its
 * file removed) or to nudge it (its file touched), and withdraw it.
 */
export class QueueTicket {
  /** Path of the request file. */
  readonly path: string;
  private watcher: FSWatcher | undefined;
  private wake: (() => void) | undefined;
  private closed = false;

  constructor(path: string) {
    this.path = path;
    try {
      // Removing or touching the file wakes this process; where watching fails (no inotify
      // watches left, a filesystem without events), the fallback timer of wait() still does.
      this.watcher = watch(path, { persistent: false }, () => this.wake?.());
      this.watcher.on('error', () => this.stopWatching());
    } catch {
      this.watcher = undefined;
    }
  }

  /** Whether a holder settled the request: its file is gone (or this owner withdrew it). */
  get done(): boolean {
    if (this.closed) return true;
    try {
      lstatSync(this.path);
      return false;
    } catch (error) {
      return errnoCode(error) === 'ENOENT';
    }
  }

  /** Resolves when the file changes (settled or nudged), or after `ms` at the latest. */
  wait(ms: number): Promise<void> {
    if (this.done) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }

  /** Takes the request back (inside the lock, or when giving up); stops watching. Idempotent. */
  withdraw(): void {
    this.stopWatching();
    if (this.closed) return;
    this.closed = true;
    unlinkQuietly(this.path);
  }

  private stopWatching(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}

/**
 * Waits for the lock as a queued request: the request is written at the first wait (a process
 * that finds the lock free never writes one), then each wait lasts until a holder settles or
 * nudges it, or the fallback retry.
 */
export class QueueWaiter implements LockWaiter {
  private readonly queue: ClaimQueue;
  private readonly name: string;
  private readonly body: () => unknown;
  private ticket: QueueTicket | null | undefined;

  /** @param body - the request, made only if it is queued. */
  constructor(queue: ClaimQueue, name: string, body: () => unknown) {
    this.queue = queue;
    this.name = name;
    this.body = body;
  }

  get done(): boolean {
    return this.ticket?.done ?? false;
  }

  wait(remainingMs: number): Promise<void> | undefined {
    if (this.ticket === undefined) {
      this.ticket = this.queue.enqueue(this.name, this.body()) ?? null;
      if (this.ticket !== null) pausePoint('queued');
    }
    if (this.ticket === null) return undefined;
    return this.ticket.wait(Math.min(remainingMs, FALLBACK_RETRY_MS * (0.5 + Math.random())));
  }

  /** Takes the request back if it was queued (idempotent). */
  withdraw(): void {
    this.ticket?.withdraw();
  }
}
