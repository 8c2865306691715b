import { lstatSync, readdirSync } from 'node:fs';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { unlinkQuietly } from '../base/fs.js';
import { fitsSunPath, isBeaconName, ownBeaconNames, SUN_PATH_SIZE } from './owner-beacon.js';
import { debugLetGo } from '../base/debug.js';

/**
 * What a probe of an owner beacon (see `owner-beacon.ts`) found:
 * - `'alive'`: the connection was accepted (the kernel queues it even while the owner is
 *   stopped or its event loop is busy);
 * - `'dead'`: refused, or no such socket: final, because a dead process never comes back
 *   and beacon names are never reused;
 * - `'unknown'`: anything else (no permission, a full queue, a timeout, a name or path that
 *   cannot be a beacon): the caller must decide by other means, such as a claim's age.
 */
export type BeaconState = 'alive' | 'dead' | 'unknown';

/** How many beacons {@link probeBeacons} connects to at once. */
const PROBE_CONCURRENCY = 16;

/** Connects once and reports `'connect'` or the error code; always closes the socket. */
function connectOnce(path: string, timeoutMs: number): Promise<string> {
  return new Promise((resolvePromise) => {
    const socket = connect({ path });
    const timer = setTimeout(() => finish('ETIMEDOUT'), timeoutMs);
    // The pending socket keeps the process alive until this settles; the timer need not.
    timer.unref();
    socket.once('connect', () => finish('connect'));
    // `on`, not `once`: an error after we settled must not go unhandled.
    socket.on('error', (error: NodeJS.ErrnoException) => finish(error.code ?? 'UNKNOWN'));
    function finish(outcome: string): void {
      clearTimeout(timer);
      socket.destroy();
      resolvePromise(outcome);
    }
  });
}

async function probeOne(dir: string, name: string, timeoutMs: number): Promise<BeaconState> {
  if (!isBeaconName(name)) return 'unknown';
  const path = join(dir, name);
  if (!fitsSunPath(path)) return 'unknown';
  try {
    // connect() follows symbolic links: a planted link must not make us reach another socket.
    if (!lstatSync(path).isSocket()) return 'unknown';
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'dead' : 'unknown';
  }
  const outcome = await connectOnce(path, timeoutMs);
  if (outcome === 'connect') return 'alive';
  if (outcome === 'ENOENT') return 'dead';
  // Linux refuses only when nobody listens (a full queue gives EAGAIN). BSD kernels, macOS
  // included, also refuse when the queue of a live but stopped owner is full.
  if (outcome === 'ECONNREFUSED' && process.platform === 'linux') {
    // Safe to remove: the name is never bound again.
    unlinkQuietly(path);
    return 'dead';
  }
  return 'unknown';
}

/**
 * Finds whether the owners of the beacons `names` in `dir` are alive (see
 * {@link BeaconState}), connecting to a bounded number at a time and closing every socket
 * it opens. Removes the socket file of each beacon it finds refused, so that those of
 * killed owners do not pile up. Names that are not beacon names (see
 * {@link isBeaconName}) are reported `'unknown'` and never touched. Never rejects.
 *
 * @param dir - The state directory the beacons were created in.
 * @param names - Beacon file names as {@link ensureOwnBeacon} returned them (duplicates are fine).
 * @param timeoutMs - How long one connection attempt may take before it counts as `'unknown'` (default 250).
 * @throws RangeError when `timeoutMs` is not a positive finite number.
 * @example
 * const states = await probeBeacons(stateDir, claims.map((claim) => claim.beacon));
 * const reapable = claims.filter((claim) => states.get(claim.beacon) === 'dead');
 */
export async function probeBeacons(dir: string, names: readonly string[], timeoutMs = 250): Promise<Map<string, BeaconState>> {
  if (!(Number.isFinite(timeoutMs) && timeoutMs > 0)) {
    throw new RangeError(`timeoutMs must be a positive finite number, got ${String(timeoutMs)}`);
  }
  const states = new Map<string, BeaconState>();
  const pending = [...new Set(names)];
  const absoluteDir = resolve(dir);
  let dirExists = false;
  try {
    dirExists = lstatSync(absoluteDir).isDirectory();
  } catch (error) {
    // Reported below: every beacon unknown.
    debugLetGo('liveness/beacon-probe', error);
  }
  // Without the directory, a missing socket says nothing about its owner.
  if (!dirExists || SUN_PATH_SIZE[process.platform] === undefined) {
    for (const name of pending) states.set(name, 'unknown');
    return states;
  }
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < pending.length) {
      const name = pending[next++]!;
      let state: BeaconState = 'unknown';
      try {
        state = await probeOne(absoluteDir, name, timeoutMs);
      } catch (error) {
        // One unreadable beacon must not fail the others.
        debugLetGo('liveness/beacon-probe', error);
      }
      states.set(name, state);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PROBE_CONCURRENCY, pending.length) }, worker));
  return states;
}

/**
 * Probes every beacon in `dir` and so removes those whose owners died without a normal
 * exit (killed, or ended by a signal it did not handle), including beacons no claim names
 * any more. Returns how many it found dead. Never rejects for a single bad beacon.
 *
 * @param dir - The state directory.
 * @param timeoutMs - Per-connection bound, as in {@link probeBeacons} (default 250).
 */
export async function sweepDeadBeacons(dir: string, timeoutMs = 250): Promise<number> {
  let names: string[];
  try {
    names = readdirSync(dir).filter(isBeaconName);
  } catch {
    return 0;
  }
  const own = ownBeaconNames();
  const states = await probeBeacons(
    dir,
    names.filter((name) => !own.has(name)),
    timeoutMs,
  );
  return [...states.values()].filter((state) => state === 'dead').length;
}
