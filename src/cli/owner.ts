import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

/** One process of the tree, as far as the owner rule needs it. */
export interface ProcessEntry {
  pid: number;
  ppid: number;
  /** The command line (or the title a program set for itself, split at spaces). */
  argv: string[];
}

// Package managers that run a bin for you: `npm exec`, `npx`, `pnpm dlx`, `yarn exec`, ...
const PACKAGE_MANAGER = /^(?:npm|npx|pnpm|pnpx|yarn|yarnpkg)(?:-cli)?(?:\.c?js)?$/;
const EXEC_SUBCOMMANDS = new Set(['exec', 'x', 'dlx']);
const SHELLS = new Set(['sh', 'bash', 'dash', 'zsh', 'ksh', 'mksh', 'ash', 'busybox']);
const MAX_DEPTH = 32;

/** Reads a process's parent and command line from /proc; `undefined` when it is gone. */
export function readProcessEntry(pid: number): ProcessEntry | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    // The name (field 2) may hold spaces and parentheses; the parent PID is field 4.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter((arg) => arg !== '');
    // npm overwrites its argv with a title such as "npm exec portlease claim": one string.
    const words = argv.length === 1 && argv[0]!.includes(' ') ? argv[0]!.split(' ') : argv;
    return Number.isInteger(ppid) ? { pid, ppid, argv: words } : undefined;
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

function isShell(argv: readonly string[]): boolean {
  return SHELLS.has(basename(argv[0] ?? '').replace(/^-/, ''));
}

function sameCommandLine(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((arg, index) => arg === b[index]);
}

/**
 * Whether `entry` is a process that will exit right after the CLI does, so that a claim
 * it owned would die at once:
 * - a package manager (`npm exec`, `npx`, `pnpm`, `yarn`): it only runs the bin;
 * - the `sh -c` an `exec`-style package manager runs the bin through;
 * - a forked subshell (same command line as its parent, as bash makes for
 *   `$(portlease claim | tr ' ' ,)` or `( ... )`): it ends with its substitution, while the
 *   shell that forked it goes on using the ports.
 * Skipping too much only makes a claim live longer, never shorter.
 */
export function isTransient(entry: ProcessEntry, parent: ProcessEntry): boolean {
  if (packageManagerOf(entry.argv) !== undefined) return true;
  if (isShell(entry.argv) && packageManagerOf(parent.argv)?.execStyle === true) return true;
  return sameCommandLine(entry.argv, parent.argv);
}

/**
 * The default owner of a claim made from the command line: the CLI exits at once, so the
 * claim belongs to its caller, found by walking up from the parent past {@link isTransient}
 * wrappers. The walk never climbs into PID 1 (a claim owned by init would never die), and
 * stops where /proc cannot be read. Without /proc (macOS, Windows) it is the parent.
 *
 * @param read - seam for tests; reads one process entry.
 */
export function defaultOwner(start: number = process.ppid, read: (pid: number) => ProcessEntry | undefined = readProcessEntry): number {
  if (process.platform !== 'linux') return start;
  let current = read(start);
  if (current === undefined) return start;
  for (let depth = 0; depth < MAX_DEPTH && current.ppid > 1; depth++) {
    const parent = read(current.ppid);
    if (parent === undefined || !isTransient(current, parent)) break;
    current = parent;
  }
  return current.pid;
}
