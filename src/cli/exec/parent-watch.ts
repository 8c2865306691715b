import { readStartTime, type StartTime } from '../../liveness/liveness.js';
import { defaultOwners, isBackgroundJob, readProcessEntry } from '../owner.js';

/** How often `exec` checks that the processes it runs for are still there. */
const POLL_MS = 500;

/**
 * The processes whose end means nobody waits for `exec` any more (Linux): its parent and,
 * above it, the wrappers and child shells that only run it (the `sh -c` and `npm exec` of
 * `npx portlease exec`), up to the first process that does more (the script or terminal
 * shell), as the claim owner's walk finds them. None when `exec` is a background job
 * (`&`, `setsid`, `( ... & )`): it is meant to outlive its parent. `undefined` without
 * /proc: then only a change of the parent PID tells.
 */
function guardians(): Array<{ pid: number; startTime: StartTime }> | undefined {
  if (process.platform !== 'linux') return undefined;
  const self = readProcessEntry(process.pid);
  const parent = readProcessEntry(process.ppid);
  if (self === undefined || parent === undefined) return undefined;
  if (isBackgroundJob(self, parent)) return [];
  const pids = defaultOwners(process.ppid, readProcessEntry, undefined) ?? [process.ppid];
  return pids.filter((pid) => pid > 1).map((pid) => ({ pid, startTime: readStartTime(pid) ?? undefined }));
}

/**
 * Calls `onGone` once when a process `exec` runs for ends: its parent, or a wrapper above
 * it. `npx` and `npm exec` do not forward SIGTERM to their command, and a SIGKILLed `npm`
 * leaves its `sh -c` running, so `portlease exec` would otherwise run on after they were
 * stopped. Polls at a low rate with an unref'd timer, which never keeps the process alive.
 * Returns a stop function.
 */
export function watchParent(onGone: () => void): () => void {
  const watched = guardians();
  if (watched !== undefined && watched.length === 0) return () => {};
  const parent = process.ppid;
  const gone = (): boolean => process.ppid !== parent || (watched ?? []).some(({ pid, startTime }) => readStartTime(pid) !== startTime);
  const timer = setInterval(() => {
    if (!gone()) return;
    clearInterval(timer);
    onGone();
  }, POLL_MS);
  timer.unref();
  return () => clearInterval(timer);
}
