import { chmodSync, lstatSync, renameSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join, resolve } from 'node:path';
import { unlinkQuietly } from '../base/fs.js';
import { processSlot } from '../base/process-state.js';
import { randomToken } from '../base/random.js';
import { STATE_FILE_MODE } from '../store/state-dir.js';

/**
 * An owner beacon is a Unix domain socket that a process listens on in the state directory.
 * The kernel closes it when the process dies, however it dies, and a connection to a path
 * crosses PID namespaces (containers, `unshare`) wherever the directory is shared. A claim
 * can therefore name its owner's beacon, and a process in another PID namespace, for which
 * the owner's PID means nothing, can still tell whether that owner runs (see
 * `beacon-probe.ts`). This module is the owner's side: creating, keeping and closing them.
 */

/**
 * The size of `sockaddr_un.sun_path` per platform. A longer path must be refused by us:
 * libuv truncates it silently, so the socket would appear under another name.
 * Platforms not listed (Windows) have no Unix sockets in directories to rely on.
 */
export const SUN_PATH_SIZE: Partial<Record<NodeJS.Platform, number>> = { linux: 108, darwin: 104 };

/** Basename only: no separator or dot can lead a probe (or its unlink) out of the directory. */
const BEACON_NAME = /^owner-[0-9a-z-]{1,64}\.sock$/;

interface OwnBeacon {
  server: Server;
  path: string;
  name: string;
  /** Inode of the socket file as bound: tells when it was removed (or replaced) under us. */
  ino: number;
}

// How often a process checks that its beacons are still in place (see keepBeaconsInPlace).
const BEACON_CHECK_MS = 30_000;

/** This thread's beacons, one per state directory, shared by every copy of portlease loaded. */
interface OwnBeacons {
  byDir: Map<string, OwnBeacon>;
  checkTimer: NodeJS.Timeout | undefined;
  exitHook: (() => void) | undefined;
}

// Process state, not module state: a CommonJS and an ESM copy of portlease in one process
// must share one beacon per directory (each worker thread still has its own).
function ownBeacons(): OwnBeacons {
  return processSlot(
    'owner-beacons.v1',
    (): OwnBeacons => ({ byDir: new Map(), checkTimer: undefined, exitHook: undefined }),
    closeBeacons,
  );
}

export function fitsSunPath(path: string): boolean {
  const size = SUN_PATH_SIZE[process.platform];
  // sun_path also holds the terminating NUL.
  return size !== undefined && Buffer.byteLength(path) < size;
}

/** Whether `name` has the shape of a beacon's file name (and nothing else). */
export function isBeaconName(name: string): boolean {
  return BEACON_NAME.test(name);
}

function unlinkBeacons(beacons: OwnBeacons): void {
  for (const beacon of beacons.byDir.values()) unlinkQuietly(beacon.path);
}

/**
 * Makes sure this thread has a beacon in `dir` and returns its file name (a basename, to
 * record in claims), or `undefined` where it cannot have one: not Linux or macOS, a path
 * longer than the platform's `sun_path`, or a failed bind (the directory missing or not
 * writable). Synchronous: the socket exists and accepts connections when this returns.
 * Called again for the same directory, returns the same name; after a failure, tries again.
 *
 * The beacon never keeps the process alive (its server is unref'd), accepts and drops
 * every connection, and is removed at a normal exit. A process killed outright leaves the
 * socket file behind; {@link probeBeacons} removes it when it finds it dead.
 *
 * @param dir - The state directory (it must exist).
 * @param shared - Whether other users of the directory's group must reach the beacon:
 *   the socket is then mode 0660, else 0600 (connecting needs write permission).
 */
export function ensureOwnBeacon(dir: string): string | undefined {
  const absoluteDir = resolve(dir);
  const beacons = ownBeacons();
  const existing = beacons.byDir.get(absoluteDir);
  if (existing !== undefined) {
    if (isInPlace(existing)) return existing.name;
    // Removed under us (the directory re-created, a temp cleaner): claims already name it,
    // and a missing beacon reads as a dead owner, so bind the same name again.
    beacons.byDir.delete(absoluteDir);
    existing.server.close();
    return bindBeacon(absoluteDir, existing.name);
  }
  // The PID only adds spread: PIDs repeat across namespaces and hosts.
  return bindBeacon(absoluteDir, `owner-${process.pid.toString(36)}-${randomToken()}.sock`);
}

function isInPlace(beacon: OwnBeacon): boolean {
  try {
    return lstatSync(beacon.path).ino === beacon.ino;
  } catch {
    return false;
  }
}

/** Every 30 s, puts back beacons removed under a process that claims no more (unref'd). */
function keepBeaconsInPlace(beacons: OwnBeacons): void {
  if (beacons.checkTimer !== undefined) return;
  beacons.checkTimer = setInterval(() => {
    for (const [dir, beacon] of beacons.byDir) if (!isInPlace(beacon)) ensureOwnBeacon(dir);
  }, BEACON_CHECK_MS);
  beacons.checkTimer.unref();
}

function bindBeacon(absoluteDir: string, name: string): string | undefined {
  const path = join(absoluteDir, name);
  // Bound and listening under a temporary name first, then renamed into place: a checker
  // must never find the name bound but not yet listening (refused reads as a dead owner).
  // The temporary name has the same length and does not look like a beacon.
  const temporaryPath = join(absoluteDir, `.${name.slice(1, -5)}.tmp`);
  if (!fitsSunPath(path) || !fitsSunPath(temporaryPath)) return undefined;
  unlinkQuietly(temporaryPath);

  const server = createServer((connection) => connection.destroy());
  // An accept error (EMFILE) would otherwise crash the owner; a failed bind is seen below.
  server.on('error', () => {});
  // exclusive: a cluster worker would otherwise ask the primary to bind, asynchronously.
  server.listen({ path: temporaryPath, exclusive: true });
  // Node binds and listens inside listen() and only reports errors on a later tick, so
  // `listening` already tells whether the socket exists.
  if (!server.listening) {
    server.close();
    return undefined;
  }
  server.unref();
  let ino: number;
  try {
    chmodSync(temporaryPath, STATE_FILE_MODE);
    renameSync(temporaryPath, path);
    ino = lstatSync(path).ino;
  } catch {
    server.close();
    unlinkQuietly(temporaryPath);
    return undefined;
  }
  const beacons = ownBeacons();
  beacons.byDir.set(absoluteDir, { server, path, name, ino });
  keepBeaconsInPlace(beacons);
  if (beacons.exitHook === undefined) {
    // A killed process skips this; its beacon is then removed by whoever finds it dead.
    beacons.exitHook = () => unlinkBeacons(beacons);
    process.once('exit', beacons.exitHook);
  }
  return name;
}

/**
 * Closes and removes every beacon of this thread and forgets them, so the next
 * {@link ensureOwnBeacon} creates a new one. For tests: claims that name a closed beacon
 * look dead to every other process from then on.
 */
export function closeOwnBeacons(): void {
  closeBeacons(ownBeacons());
}

function closeBeacons(beacons: OwnBeacons): void {
  for (const beacon of beacons.byDir.values()) {
    beacon.server.close();
    unlinkQuietly(beacon.path);
  }
  beacons.byDir.clear();
  if (beacons.checkTimer !== undefined) {
    clearInterval(beacons.checkTimer);
    beacons.checkTimer = undefined;
  }
  if (beacons.exitHook !== undefined) {
    process.off('exit', beacons.exitHook);
    beacons.exitHook = undefined;
  }
}

/** The names of this thread's own beacons (a sweep leaves them alone). */
export function ownBeaconNames(): Set<string> {
  return new Set(Array.from(ownBeacons().byDir.values(), (beacon) => beacon.name));
}
