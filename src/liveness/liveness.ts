import { closeSync, openSync, readFileSync, readlinkSync, readSync } from 'node:fs';

/**
 * What identifies a process beyond its PID, so that a recycled PID is not mistaken
 * for the original owner. On Linux, the start time in clock ticks since boot from
 * `/proc/<pid>/stat`; elsewhere nothing cheaper than the PID is available.
 */
export type StartTime = string | undefined;

const hasProcfs = process.platform === 'linux';
let cachedBootId: string | undefined | null = null;
let cachedPidNamespace: string | undefined | null = null;

/**
 * The identity of the running boot: Linux's random boot id, or `undefined` where the
 * platform offers no cheap and exact one (claims then rely on PID liveness alone).
 */
export function currentBootId(): string | undefined {
  if (cachedBootId === null) {
    cachedBootId = undefined;
    if (hasProcfs) {
      try {
        cachedBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
      } catch {
        // /proc not mounted (some containers): fall back to PID liveness.
      }
    }
  }
  return cachedBootId;
}

/**
 * The PID namespace this process's PID belongs to: on Linux the inode number of
 * `/proc/self/ns/pid` (`pid:[4026531836]` gives `'4026531836'`), read once. A PID is only
 * meaningful within its namespace, so two claims whose namespaces differ cannot check each
 * other's owner by PID. `undefined` elsewhere, or where `/proc` does not tell.
 */
export function currentPidNamespace(): string | undefined {
  if (cachedPidNamespace === null) {
    cachedPidNamespace = undefined;
    if (hasProcfs) {
      try {
        cachedPidNamespace = /^pid:\[(\d+)\]$/.exec(readlinkSync('/proc/self/ns/pid'))?.[1];
      } catch {
        // /proc not mounted, or the link hidden: no namespace to record.
      }
    }
  }
  return cachedPidNamespace;
}

interface ProcStat {
  state: string;
  startTime: string;
}

// One fixed buffer and a single read: readFileSync needs several reads for a procfs file
// (it reports size 0), which costs 37 µs here against 16 µs.
const statBuffer = Buffer.alloc(1024);

function readProcStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    const fd = openSync(`/proc/${pid}/stat`, 'r');
    try {
      text = statBuffer.toString('latin1', 0, readSync(fd, statBuffer, 0, statBuffer.length, 0));
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // After the name come state (field 3) ... starttime (field 22).
  const state = fields[0];
  const startTime = fields[19];
  if (state === undefined || startTime === undefined) return undefined;
  return { state, startTime };
}

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
  if (hasProcfs) {
    const stat = readProcStat(pid);
    if (stat !== undefined) return stat.state === 'Z' || stat.state === 'X' ? null : stat.startTime;
  }
  return signalZeroSaysAlive(pid) ? undefined : null;
}

/**
 * Below this age a claim's PID is trusted without comparing start times: the kernel hands
 * out every other PID before it recycles one, which takes far longer on any real machine.
 * Skipping the check can only keep a claim alive too long, never free a live one, and it
 * keeps the search cheap when it walks past many young claims (3 µs against 16 µs each).
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
let ownStartTime: StartTime | null = null;
export function currentStartTime(): StartTime {
  if (ownStartTime === null) ownStartTime = readStartTime(process.pid) ?? undefined;
  return ownStartTime;
}
