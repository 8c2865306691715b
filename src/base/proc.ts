/**
 * What Linux's `/proc` says about processes and namespaces: the one place that parses it.
 * Elsewhere (macOS, Windows, or `/proc` not mounted) every answer is `undefined`, and callers
 * fall back to what the PID alone tells.
 */
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync } from 'node:fs';
import { processCache } from './process-state.js';
import { debugLetGo } from './debug.js';

const hasProcfs = process.platform === 'linux';

/** The fields of `/proc/<pid>/stat` portlease uses. */
export interface ProcStat {
  /** One letter: `R`, `S`, `D`, `T`, `Z` (zombie), `X` (dead), ... */
  state: string;
  ppid: number;
  /** Process group. */
  pgrp: number;
  /** Foreground process group of its terminal; -1 without one. */
  tpgid: number;
  /** Start time in clock ticks since boot: with the PID, it names one process. */
  startTime: string;
}

// One fixed buffer and a single read: readFileSync needs several reads for a procfs file
// (it reports size 0).
const statBuffer = Buffer.alloc(1024);

/** Parses the text of a `/proc/<pid>/stat` file; `undefined` if it is not one. */
export function parseProcStat(text: string): ProcStat | undefined {
  // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // After the name: state (field 3), ppid, pgrp, session, tty_nr, tpgid (8) ... starttime (22).
  const [state, ppid, pgrp, , , tpgid] = fields;
  const startTime = fields[19];
  if (state === undefined || startTime === undefined) return undefined;
  return { state, ppid: Number(ppid), pgrp: Number(pgrp), tpgid: Number(tpgid), startTime };
}

/** `/proc/<pid>/stat` of a process (`'self'` for this one); `undefined` when it is gone or unreadable. */
export function readProcStat(pid: number | 'self'): ProcStat | undefined {
  if (!hasProcfs) return undefined;
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
  return parseProcStat(text);
}

/** Whether a `/proc/<pid>/stat` state is a process that is gone (a zombie, or dead). */
export function isExitedState(state: string): boolean {
  return state === 'Z' || state === 'X';
}

/**
 * Whether `/proc` shows this process's own PID namespace. In a PID namespace entered without
 * remounting `/proc` (`unshare --pid` without `--mount-proc`), `/proc/<pid>` names other
 * processes than our PIDs do, and nothing read there may be trusted for a PID.
 */
export function procShowsOwnPidNamespace(): boolean {
  return processCache('proc-is-ours', () => {
    if (!hasProcfs) return false;
    try {
      return Number(readlinkSync('/proc/self')) === process.pid;
    } catch {
      return false;
    }
  });
}

function namespaceInode(kind: 'pid' | 'net'): string | undefined {
  if (!hasProcfs) return undefined;
  try {
    return new RegExp(`^${kind}:\\[(\\d+)\\]$`).exec(readlinkSync(`/proc/self/ns/${kind}`))?.[1];
  } catch (error) {
    // /proc not mounted, or the link hidden: no namespace to tell.
    debugLetGo('base/proc', error);
    return undefined;
  }
}

/**
 * The PID namespace this process's PID belongs to: on Linux the inode number of
 * `/proc/self/ns/pid` (`pid:[4026531836]` gives `'4026531836'`). A PID is only meaningful
 * within its namespace, so two claims whose namespaces differ cannot check each other's owner
 * by PID. `undefined` elsewhere, or where `/proc` does not tell.
 */
export function currentPidNamespace(): string | undefined {
  return processCache('pid-namespace', () => namespaceInode('pid'));
}

/**
 * This process's network namespace (Linux: `net:[4026531840]`), or `undefined` where there is
 * none to tell: processes in different ones see different sockets on the same port numbers.
 */
export function currentNetworkNamespace(): string | undefined {
  return processCache('net-namespace', () => {
    const inode = namespaceInode('net');
    return inode === undefined ? undefined : `net:[${inode}]`;
  });
}

/**
 * The identity of the running boot: Linux's random boot id, or `undefined` where the platform
 * offers no cheap and exact one (claims then rely on PID liveness alone).
 */
export function currentBootId(): string | undefined {
  return processCache('boot-id', () => {
    if (!hasProcfs) return undefined;
    try {
      return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
    } catch (error) {
      // /proc not mounted (some containers): fall back to PID liveness.
      debugLetGo('base/proc', error);
      return undefined;
    }
  });
}

/**
 * Whether a process of group `pgid` that is not a zombie exists, from `/proc`. An orphan
 * that exited stays a zombie until PID 1 reaps it, and some container inits never do, so a
 * bare `kill(-pgid, 0)` would see it running forever. Where `/proc` does not show our PID
 * namespace, `kill(-pgid, 0)` is all there is.
 */
export function liveProcessInGroup(pgid: number): boolean {
  if (!hasProcfs || !procShowsOwnPidNamespace()) {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch (error) {
      return (error as NodeJS.ErrnoException).code !== 'ESRCH';
    }
  }
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return true; // nothing tells: assume it runs
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readProcStat(Number(entry)); // undefined: exited meanwhile
    if (stat !== undefined && stat.pgrp === pgid && !isExitedState(stat.state)) return true;
  }
  return false;
}

// O_CLOEXEC in /proc/<pid>/fdinfo's octal `flags`.
const O_CLOEXEC = 0o2000000;

/**
 * The descriptors above 2 this process would pass to every child it spawns: those it
 * inherited without close-on-exec (Node opens its own with it). Empty where /proc cannot tell.
 */
export function inheritableFds(): number[] {
  if (!hasProcfs) return [];
  let entries: string[];
  try {
    entries = readdirSync('/proc/self/fd');
  } catch {
    return [];
  }
  const fds: number[] = [];
  for (const entry of entries) {
    const fd = Number(entry);
    if (!(fd > 2)) continue;
    try {
      const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'latin1'))?.[1];
      if (flags !== undefined && (Number.parseInt(flags, 8) & O_CLOEXEC) === 0) fds.push(fd);
    } catch (error) {
      // Closed meanwhile (the descriptor of the readdir itself).
      debugLetGo('base/proc', error);
    }
  }
  return fds;
}
