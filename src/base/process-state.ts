import { threadId } from 'node:worker_threads';
import { randomToken } from './random.js';

/**
 * What belongs to this process (this thread, for a worker) rather than to one allocator:
 * the claim id counter, the claims to give back at exit with the handler that does it, and
 * the slots other modules keep their process-wide state in (owner beacons, default allocators).
 *
 * It lives on `globalThis` under a registered symbol, not in module variables: a process can
 * load two copies of portlease (the CommonJS build through `require`, the ESM build through
 * `import`, or two versions in a monorepo), and both must see one set of claims to release at
 * exit and one beacon. Each worker thread has its own `globalThis`, hence its own state. The
 * `v1` in the key changes whenever the shape below does, so two versions of different shapes
 * never read each other's.
 */
interface ProcessState {
  /** Unpredictable per thread: ids stay unique across hosts, PID namespaces and threads. */
  idPrefix: string;
  claimCounter: number;
  /** Per state file: the ids of the claims this thread made for its own process, and how to give them back. */
  exitReleases: Map<string, { ids: Set<string>; release: (ids: ReadonlySet<string>) => void }>;
  /** The `exit` listener that gives them back, once installed (kept so any copy can remove it). */
  exitHook: (() => void) | undefined;
  /** Named process-wide values of other modules, with how to dispose of each on reset. */
  slots: Map<string, { value: unknown; dispose: ((value: unknown) => void) | undefined }>;
}

const kProcessState = Symbol.for('portlease.process-state.v1');

function freshState(): ProcessState {
  return {
    idPrefix: `${process.pid.toString(36)}.${threadId.toString(36)}.${randomToken()}`,
    claimCounter: 0,
    exitReleases: new Map(),
    exitHook: undefined,
    slots: new Map(),
  };
}

function processState(): ProcessState {
  const holder = globalThis as unknown as Record<symbol, ProcessState | undefined>;
  return (holder[kProcessState] ??= freshState());
}

/**
 * A claim id unique everywhere the state file may be shared: two PID 1 processes of two
 * containers, claiming in the same millisecond, still get different ids.
 */
export function newClaimId(): string {
  const state = processState();
  state.claimCounter = (state.claimCounter + 1) % Number.MAX_SAFE_INTEGER;
  return `${state.idPrefix}-${state.claimCounter.toString(36)}`;
}

/**
 * The set of claim ids to give back when this thread exits, for `stateFile`; `release` is
 * registered on first use and called with the ids left in the set. Worker threads share the
 * PID, so only the claims this thread made are given back, never "the process's claims".
 */
export function claimsReleasedAtExit(stateFile: string, release: (ids: ReadonlySet<string>) => void): Set<string> {
  const state = processState();
  let entry = state.exitReleases.get(stateFile);
  if (entry === undefined) {
    entry = { ids: new Set(), release };
    state.exitReleases.set(stateFile, entry);
  }
  if (state.exitHook === undefined) {
    const releases = state.exitReleases;
    state.exitHook = () => {
      for (const { ids, release: giveBack } of releases.values()) if (ids.size > 0) giveBack(ids);
    };
    process.once('exit', state.exitHook);
  }
  return entry.ids;
}

/**
 * The process-wide value named `key`, made by `create` on first use. `dispose` runs when
 * {@link resetProcessState} forgets it. Keys carry their own version (`'beacons.v1'`), for
 * the same reason as the state's symbol.
 */
export function processSlot<T>(key: string, create: () => T, dispose?: (value: T) => void): T {
  const { slots } = processState();
  let slot = slots.get(key);
  if (slot === undefined) {
    slot = { value: create(), dispose: dispose as ((value: unknown) => void) | undefined };
    slots.set(key, slot);
  }
  return slot.value as T;
}

/**
 * A fact about this process, computed once by `compute` (a namespace, the boot id, what /proc
 * shows) and forgotten by {@link resetProcessState}.
 */
export function processCache<T>(key: string, compute: () => T): T {
  // One slot for every cache: a lookup per call, on hot paths, and no key to build.
  const caches = processSlot('caches.v1', () => new Map<string, unknown>());
  if (caches.has(key)) return caches.get(key) as T;
  const value = compute();
  caches.set(key, value);
  return value;
}

/** Forgets everything process-wide (the exit hook and every slot included); for tests. */
export function resetProcessState(): void {
  const state = processState();
  if (state.exitHook !== undefined) process.off('exit', state.exitHook);
  for (const { value, dispose } of state.slots.values()) dispose?.(value);
  (globalThis as unknown as Record<symbol, ProcessState | undefined>)[kProcessState] = freshState();
}
