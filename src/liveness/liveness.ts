import { isExitedState, readProcStat } from '../base/proc.js';
import { processCache } from '../base/process-state.js';

/**
 * What identifies a process beyond its PID, so that a recycled PID is not mistaken
 * for the original owner. On Linux, the start time in clock ticks since boot from
 * `/proc/<pid>/stat`; elsewhere nothing cheaper than the PID is available.
 */
export type StartTime = string | undefined;

function signalZeroSaysAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * The start time of a live process, or `null` when no such process runs.
 * `undefined` means alive but with no start time to record (not Linux, or /proc hidden).
 */
export function readStartTime(pid: number): StartTime | null {
  const stat = readProcStat(pid);
  if (stat !== undefined) return isExitedState(stat.state) ? null : stat.startTime;
  return signalZeroSaysAlive(pid) ? undefined : null;
}

/**
 * Below this age a claim's PID is trusted without comparing start times: the kernel hands
 * out every other PID before it recycles one, which takes far longer on any real machine.
 * Skipping the check can only keep a claim alive too long, never free a live one, and it
 * keeps the search cheap when it walks past many young claims (a signal instead of a /proc read).
 */
export const PID_REUSE_GUARD_MS = 30_000;

/**
 * How long a claim from another PID namespace holds its ports when nothing tells whether its
 * owner still runs (no beacon: a claim made by the CLI for a shell, or a beacon this process
 * may not open). A TTL given with the claim ends it earlier.
 */
export const FOREIGN_OWNER_MAX_AGE_MS = 24 * 60 * 60 * 1000;

/**
 * Whether the process that had `pid` (and, when known, `startTime`) when it claimed
 * ports `ageMs` ago is still running. For claims older than {@link PID_REUSE_GUARD_MS},
 * the start time is compared, so a recycled PID does not keep a dead owner's claim, and a
 * zombie counts as dead: it can no longer use a port.
 */
export function isOwnerAlive(pid: number, startTime: StartTime, ageMs = Number.POSITIVE_INFINITY): boolean {
  if (ageMs < PID_REUSE_GUARD_MS) return signalZeroSaysAlive(pid);
  const current = readStartTime(pid);
  if (current === null) return false;
  // Unknown on either side: trust the PID rather than drop a possibly live claim.
  if (current === undefined || startTime === undefined) return true;
  return current === startTime;
}

/** This process's own start time, read once. */
export function currentStartTime(): StartTime {
  return processCache('start-time', () => readStartTime(process.pid) ?? undefined);
}
