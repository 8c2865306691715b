import { threadId } from 'node:worker_threads';
import { randomToken } from './state-format.js';

/**
 * What belongs to this process (this thread, for a worker) rather than to one allocator:
 * the claim id counter, and the claims to give back at exit with the handler that does it.
 * Kept in one place so there is one obvious way to reset it in tests.
 */
interface ProcessState {
  /** Unpredictable per thread: ids stay unique across hosts, PID namespaces and threads. */
  idPrefix: string;
  claimCounter: number;
  /** Per state file: the ids of the claims this thread made for its own process, and how to give them back. */
  exitReleases: Map<string, { ids: Set<string>; release: (ids: ReadonlySet<string>) => void }>;
  exitHookInstalled: boolean;
}

function freshState(): ProcessState {
  return {
    idPrefix: `${process.pid.toString(36)}.${threadId.toString(36)}.${randomToken()}`,
    claimCounter: 0,
    exitReleases: new Map(),
    exitHookInstalled: false,
  };
}

let state = freshState();

/**
 * A claim id unique everywhere the state file may be shared: two PID 1 processes of two
 * containers, claiming in the same millisecond, still get different ids.
 */
export function newClaimId(): string {
  state.claimCounter = (state.claimCounter + 1) % Number.MAX_SAFE_INTEGER;
  return `${state.idPrefix}-${state.claimCounter.toString(36)}`;
}

function releaseOwnClaimsAtExit(): void {
  for (const { ids, release } of state.exitReleases.values()) if (ids.size > 0) release(ids);
}

/**
 * The set of claim ids to give back when this thread exits, for `stateFile`; `release` is
 * registered on first use and called with the ids left in the set. Worker threads share the
 * PID, so only the claims this thread made are given back, never "the process's claims".
 */
export function claimsReleasedAtExit(stateFile: string, release: (ids: ReadonlySet<string>) => void): Set<string> {
  let entry = state.exitReleases.get(stateFile);
  if (entry === undefined) {
    entry = { ids: new Set(), release };
    state.exitReleases.set(stateFile, entry);
  }
  if (!state.exitHookInstalled) {
    state.exitHookInstalled = true;
    process.once('exit', releaseOwnClaimsAtExit);
  }
  return entry.ids;
}

/** Forgets everything process-wide (the exit hook included); for tests. */
export function resetProcessState(): void {
  if (state.exitHookInstalled) process.off('exit', releaseOwnClaimsAtExit);
  state = freshState();
}
