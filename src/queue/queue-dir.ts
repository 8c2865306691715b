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
  fchmodSync,
  fstatSync,
  type FSWatcher,
  lstatSync,
  lutimesSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  watch,
  writeFileSync,
} from 'node:fs';
import { basename, join } from 'node:path';
import { pausePoint } from '../base/pause-points.js';
import { errnoCode, NEW_FILE_FLAGS, READ_NO_FOLLOW_FLAGS, unlinkQuietly } from '../base/fs.js';
import { randomToken } from '../base/random.js';
import { debugLetGo } from '../base/debug.js';

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
// An empty queue is trusted by its modification time only once that time is this old: on a
// filesystem with coarse times, a request added in the same tick would not change it.
const COARSE_TIME_MS = 1000;
// Waiters woken after each release: the oldest may be stopped or dead, and all of them would
// contend for the lock at once.
const NUDGED_PER_RELEASE = 2;

/**
 * The request in the file at `path`, if it is a small regular file. Never through a planted
 * name: O_NOFOLLOW refuses a symlink, O_NONBLOCK a FIFO (and new requests are made with O_EXCL).
 */
function readRequest(path: string): unknown {
  const fd = openSync(path, READ_NO_FOLLOW_FLAGS);
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile() || stats.size > MAX_REQUEST_BYTES) return undefined;
    return JSON.parse(readFileSync(fd, 'utf8'));
  } finally {
    closeSync(fd);
  }
}

/**
 * The queue directory of one state file. Every method is synchronous and never throws: a queue
 * that cannot be used only means each process takes the lock itself, as without a queue.
 */
export class ClaimQueue {
  /** Path of the queue directory. */
  readonly dir: string;
  private readonly fileMode: number;
  private readonly dirMode: number;
  /** The modification time of the queue directory when it was last seen empty. */
  private emptySince: number | undefined;
  /** Entries this process could not remove (another user's, a directory): passed over from then on. */
  private readonly stuck = new Set<string>();

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
        // The umask must not keep the holders of other users of a shared directory out.
        fchmodSync(fd, this.fileMode);
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
    const files: QueuedFile[] = [];
    for (const name of this.requestNames().slice(0, MAX_SERVED_PER_TURN)) {
      const path = join(this.dir, name);
      let body: unknown;
      try {
        body = readRequest(path);
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
    for (const file of files) {
      try {
        unlinkSync(file.path);
      } catch (error) {
        if (errnoCode(error) !== 'ENOENT') this.stuck.add(basename(file.path));
      }
    }
  }

  /**
   * After the lock is released: touches the oldest requests still waiting, so their owners try
   * the lock now (and serve the others) instead of at their next fallback retry. Only a couple,
   * not all: waking every waiter would have them all contend for the lock at once.
   */
  nudgeOldest(): void {
    const now = new Date();
    for (const name of this.requestNames().slice(0, NUDGED_PER_RELEASE)) {
      try {
        // lutimes: a symlink planted as a request is touched itself, never what it points to.
        lutimesSync(join(this.dir, name), now, now);
      } catch (error) {
        // Withdrawn meanwhile, or not ours to touch: its owner retries by itself.
        debugLetGo('queue/queue-dir', error);
      }
    }
  }

  private requestNames(): string[] {
    let names: string[];
    let modifiedAt: number;
    try {
      // One lstat, not a readdir, in the usual case: an empty queue that has not changed since.
      // Anything but a directory (a symlink planted in a shared directory) is no queue.
      const stats = lstatSync(this.dir, { throwIfNoEntry: false });
      if (stats === undefined || !stats.isDirectory() || stats.mtimeMs === this.emptySince) return [];
      modifiedAt = stats.mtimeMs;
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    const requests: string[] = [];
    for (const name of names) {
      if (name.endsWith(REQUEST_SUFFIX) && !this.stuck.has(name)) requests.push(name);
      else if (name.startsWith(WRITING_PREFIX)) this.removeIfLeftOver(join(this.dir, name));
    }
    // Read after the lstat, so a request added since changes the time again.
    this.emptySince = names.length === 0 && Date.now() - modifiedAt > COARSE_TIME_MS ? modifiedAt : undefined;
    return requests.sort();
  }

  private removeIfLeftOver(path: string): void {
    try {
      if (Date.now() - lstatSync(path).mtimeMs > LEFTOVER_MS) unlinkQuietly(path);
    } catch (error) {
      // Renamed or removed meanwhile.
      debugLetGo('queue/queue-dir', error);
    }
  }

  /** Creates the queue directory if needed; refuses a symlink or anything but a directory there. */
  private ensureDir(): boolean {
    try {
      mkdirSync(this.dir, { mode: this.dirMode });
      // The umask must not keep the other users of a shared directory out.
      chmodSync(this.dir, this.dirMode);
    } catch (error) {
      if (errnoCode(error) !== 'EEXIST') return false;
    }
    return lstatSync(this.dir, { throwIfNoEntry: false })?.isDirectory() === true;
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
  private withdrawn = false;

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

  /** Whether a holder settled the request: its file is gone, and not because its owner withdrew it. */
  get settled(): boolean {
    if (this.withdrawn) return false;
    try {
      lstatSync(this.path);
      return false;
    } catch (error) {
      return errnoCode(error) === 'ENOENT';
    }
  }

  /** Resolves when the file changes (settled or nudged), or after `ms` at the latest. */
  wait(ms: number): Promise<void> {
    if (this.settled) return Promise.resolve();
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
    if (this.withdrawn) return;
    this.withdrawn = true;
    unlinkQuietly(this.path);
  }

  /** Whether its owner took it back. */
  get isWithdrawn(): boolean {
    return this.withdrawn;
  }

  private stopWatching(): void {
    this.watcher?.close();
    this.watcher = undefined;
  }
}
