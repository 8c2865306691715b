import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { procShowsOwnPidNamespace, readProcStat } from '../base/proc.js';
import { debugLetGo } from '../base/debug.js';

/** One process of the tree, as far as the owner rule needs it. */
export interface ProcessEntry {
  pid: number;
  ppid: number;
  /** The command line (or the title a program set for itself, split at spaces). */
  argv: string[];
  /** Process group. */
  pgid?: number;
  /** Foreground process group of its terminal; -1 without one. */
  tpgid?: number;
  /** Whether it ignores SIGINT: a shell without job control starts its `&` jobs so. */
  ignoresSigint?: boolean;
  /** The pipes (`pipe:[N]`) it holds open for reading. */
  readEnds?: readonly string[];
}

// Package managers that run a bin for you: `npm exec`, `npx`, `pnpm dlx`, `yarn exec`, ...
const PACKAGE_MANAGER = /^(?:npm|npx|pnpm|pnpx|yarn|yarnpkg)(?:-cli)?(?:\.c?js)?$/;
const EXEC_SUBCOMMANDS = new Set(['exec', 'x', 'dlx']);
const SHELLS = new Set(['sh', 'bash', 'dash', 'zsh', 'ksh', 'mksh', 'ash', 'busybox']);
// Programs that run one command and end with it (or exec it): they never use the ports.
const WRAPPERS = new Set([
  'timeout',
  'flock',
  'time',
  'env',
  'nice',
  'ionice',
  'chrt',
  'taskset',
  'numactl',
  'stdbuf',
  'setsid',
  'nohup',
  'runuser',
  'su',
  'sudo',
  'doas',
  'xargs',
  'parallel',
  'unbuffer',
  'chronic',
  'strace',
  'ltrace',
]);
// Interpreters that some wrappers are scripts of (GNU parallel is perl, unbuffer is tclsh).
const INTERPRETER = /^(?:perl[\d.]*|python[\d.]*|tclsh[\d.]*|expect|ruby[\d.]*)$/;
const MAX_DEPTH = 32;

function pipesOpenForReading(pid: number): string[] {
  const pipes: string[] = [];
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return pipes; // another user's process: we cannot tell
  }
  for (const fd of fds) {
    try {
      const target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (!target.startsWith('pipe:')) continue;
      const flags = /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'latin1'))?.[1];
      // The access mode is the low two bits: 0 is O_RDONLY.
      if (flags !== undefined && (Number.parseInt(flags, 8) & 3) === 0) pipes.push(target);
    } catch (error) {
      // closed meanwhile
      debugLetGo('cli/owner', error);
    }
  }
  return pipes;
}

/** Reads a process's parent, command line, group, signals and pipes from /proc; `undefined` when it is gone. */
export function readProcessEntry(pid: number): ProcessEntry | undefined {
  // In a PID namespace entered without remounting /proc, /proc/<pid> names other processes.
  if (!procShowsOwnPidNamespace()) return undefined;
  const stat = readProcStat(pid);
  if (stat === undefined) return undefined;
  try {
    const { ppid } = stat;
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .filter((arg) => arg !== '');
    // npm overwrites its argv with a title such as "npm exec portlease claim": one string.
    const words = argv.length === 1 && argv[0]!.includes(' ') ? argv[0]!.split(' ') : argv;
    const sigIgn = /^SigIgn:\s*([0-9a-f]+)/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1] ?? '0';
    if (!Number.isInteger(ppid)) return undefined;
    return {
      pid,
      ppid,
      argv: words,
      pgid: stat.pgrp,
      tpgid: stat.tpgid,
      // SIGINT is signal 2: bit 1 of the mask's last hex digit.
      ignoresSigint: (Number.parseInt(sigIgn.slice(-1), 16) & 2) !== 0,
      readEnds: pipesOpenForReading(pid),
    };
  } catch {
    return undefined;
  }
}

/** The pipe this process's stdout writes into (`pipe:[N]`), if it is one. */
export function stdoutPipe(): string | undefined {
  try {
    const target = readlinkSync('/proc/self/fd/1');
    return target.startsWith('pipe:') ? target : undefined;
  } catch {
    return undefined;
  }
}

/** Which package manager runs here, and whether it is running a bin for the caller (`exec`-like). */
export function packageManagerOf(argv: readonly string[]): { execStyle: boolean } | undefined {
  let index = 0;
  const first = basename(argv[0] ?? '');
  if (first === 'node' || first === 'nodejs') index = 1;
  const name = basename(argv[index] ?? '');
  if (!PACKAGE_MANAGER.test(name)) return undefined;
  return { execStyle: name.startsWith('npx') || name.startsWith('pnpx') || EXEC_SUBCOMMANDS.has(argv[index + 1] ?? '') };
}

/** Whether `argv` is a wrapper that runs one command and ends with it: `timeout`, `flock`, `nice`, `xargs`, ... */
export function isWrapper(argv: readonly string[]): boolean {
  const first = basename(argv[0] ?? '');
  const name = INTERPRETER.test(first) ? basename(argv[1] ?? '') : first;
  return WRAPPERS.has(name) || packageManagerOf(argv) !== undefined;
}

function isShell(argv: readonly string[]): boolean {
  return SHELLS.has(basename(argv[0] ?? '').replace(/^-/, ''));
}

/** Whether a shell runs a command string (`sh -c STRING`, `bash -ec STRING`, ...). */
function runsCommandString(argv: readonly string[]): boolean {
  for (let index = 1; index < argv.length; index++) {
    const arg = argv[index]!;
    if (arg === '-o' || arg === '+o') index++;
    else if (/^-[a-zA-Z]+$/.test(arg)) {
      if (arg.includes('c')) return true;
    } else if (!arg.startsWith('--')) return false;
  }
  return false;
}

function sameCommandLine(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((arg, index) => arg === b[index]);
}

/**
 * A shell that runs a command string or was forked from its parent shell (same command
 * line: `( ... )`, `$(... | ...)`, a pipeline stage). It may go on after the CLI, but its
 * parent waits for it unless it is a {@link isBackgroundJob background job}.
 */
export function isChildShell(entry: ProcessEntry, parent: ProcessEntry): boolean {
  return isShell(entry.argv) && (runsCommandString(entry.argv) || sameCommandLine(entry.argv, parent.argv));
}

/**
 * Whether `parent` does not wait for `entry`, so that `entry` may outlive it: `entry` was
 * started with `&` by a shell without job control (such jobs ignore SIGINT, their parent
 * does not), or runs in a process group of its own that is not its terminal's foreground
 * group (`&` under job control, `setsid`, a detached spawn).
 */
export function isBackgroundJob(entry: ProcessEntry, parent: ProcessEntry): boolean {
  if (entry.ignoresSigint === true && parent.ignoresSigint !== true) return true;
  if (entry.pgid === undefined || parent.pgid === undefined) return false;
  return entry.pgid !== parent.pgid && entry.pgid !== entry.tpgid;
}

/**
 * Whether the walk goes on from `entry` to `parent`. Wrappers and package managers end
 * with their command: the walk always passes those that only run the CLI (`timeout 30
 * portlease claim`), and the others unless they run in the background. A shell that its
 * parent waits for ({@link isChildShell}) is passed as well: the parent lives at least as
 * long. Skipping too much only makes a claim live longer, never shorter.
 *
 * @param onlyWrappersBelow - whether everything between `entry` and the CLI is a wrapper.
 */
export function isTransient(entry: ProcessEntry, parent: ProcessEntry, onlyWrappersBelow = true): boolean {
  if (isWrapper(entry.argv)) return onlyWrappersBelow || !isBackgroundJob(entry, parent);
  return isChildShell(entry, parent) && !isBackgroundJob(entry, parent);
}

/** The nearest of `first` and its ancestors that reads `pipe`, within {@link MAX_DEPTH}. */
function readerOf(pipe: string, first: ProcessEntry, read: (pid: number) => ProcessEntry | undefined): ProcessEntry | undefined {
  let current: ProcessEntry | undefined = first;
  for (let depth = 0; depth < MAX_DEPTH && current !== undefined; depth++) {
    if (current.readEnds?.includes(pipe) === true && !isWrapper(current.argv)) return current;
    if (current.ppid < 1 || current.pid === 1) return undefined;
    current = read(current.ppid);
  }
  return undefined;
}

/**
 * The default owner of a claim made from the command line. The CLI exits at once, so the
 * claim belongs to the process that will use the ports:
 * 1. the reader: when stdout is a pipe, the nearest ancestor that reads it (the shell of
 *    `P=$(portlease claim)`, whichever job it is, also through unknown wrappers);
 * 2. else the parent, or above it past {@link isTransient} processes; a background job
 *    stops the walk, so each job owns its own claims.
 * The walk never climbs into PID 1 (a claim owned by init would never die), and stops
 * where /proc cannot be read. Without /proc (macOS, Windows) it is the parent.
 *
 * @param start - the parent; 0 when it lies outside our PID namespace (or we are PID 1).
 * @param read - seam for tests; reads one process entry.
 * @param output - the pipe stdout writes into, if any.
 * @returns the owner's PID, or `undefined` when the CLI is PID 1 of its namespace:
 *   nothing there outlives it, so no process can own the claim.
 */
export function defaultOwner(
  start: number = process.ppid,
  read: (pid: number) => ProcessEntry | undefined = readProcessEntry,
  output: string | undefined = stdoutPipe(),
): number | undefined {
  return walkToOwner(start, read, output)?.owner;
}

/**
 * The processes whose claims a bare `portlease release` gives back: the owner
 * {@link defaultOwner} picks, and every process the walk passed on the way there. They are
 * all ancestors of this very invocation, so a claim one of them owns was made by this same
 * script or command string (the `sh -c` of `sh -c 'P=$(portlease claim); ...; portlease
 * release'` reads the claim's output, while the release, whose output nobody reads, walks
 * past it), never by another background job.
 *
 * @returns `undefined` when the CLI is PID 1 of its namespace (see {@link defaultOwner}).
 */
export function defaultOwners(
  start: number = process.ppid,
  read: (pid: number) => ProcessEntry | undefined = readProcessEntry,
  output: string | undefined = stdoutPipe(),
): number[] | undefined {
  const walked = walkToOwner(start, read, output);
  return walked === undefined ? undefined : [...new Set([...walked.passed, walked.owner])];
}

function walkToOwner(
  start: number,
  read: (pid: number) => ProcessEntry | undefined,
  output: string | undefined,
): { owner: number; passed: number[] } | undefined {
  if (start === 0) return process.pid === 1 ? undefined : { owner: 1, passed: [] }; // PID 1 of our namespace: a container's init
  if (process.platform !== 'linux') return { owner: start, passed: [] };
  let current = read(start);
  if (current === undefined) return { owner: start, passed: [] };
  const passed: number[] = [];
  let onlyWrappersBelow = true;
  for (let depth = 0; depth < MAX_DEPTH && current.ppid > 1; depth++) {
    const parent = read(current.ppid);
    if (parent === undefined || !isTransient(current, parent, onlyWrappersBelow)) break;
    passed.push(current.pid);
    onlyWrappersBelow &&= isWrapper(current.argv);
    current = parent;
  }
  const reader = output === undefined ? undefined : readerOf(output, read(start) ?? current, read);
  return reader === undefined ? { owner: current.pid, passed } : { owner: reader.pid, passed: [...passed, current.pid] };
}
