import { readdirSync, readFileSync } from 'node:fs';

/** How often a wait for the group to empty looks again: rare enough to cost nothing. */
const POLL_MS = 100;

function errorCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException).code;
}

/**
 * Whether a process of group `pgid` that is not a zombie exists, from `/proc` (Linux). An
 * orphan that exited stays a zombie until PID 1 reaps it, and some container inits never
 * do, so a bare `kill(-pgid, 0)` would see it "running" forever.
 */
function hasLiveMemberInProc(pgid: number): boolean {
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'latin1');
    } catch {
      continue; // exited meanwhile
    }
    // Fields after the command name (which may hold spaces and parentheses): state ppid pgrp ...
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') return true;
  }
  return false;
}

/**
 * The process group `exec` runs its command in: the command is its leader, and everything
 * the command starts stays in it unless it leaves on purpose (`setsid`, a daemon's double
 * fork). Unix only.
 */
export class CommandGroup {
  private killTimer: NodeJS.Timeout | undefined;

  /** @param pgid - the group's id: the PID of its leader, started `detached`. */
  constructor(readonly pgid: number) {}

  /** Sends `signal` to every process of the group; `false` when none is left. */
  signal(signal: NodeJS.Signals): boolean {
    try {
      process.kill(-this.pgid, signal);
      return true;
    } catch (error) {
      if (errorCode(error) === 'ESRCH') return false;
      throw error;
    }
  }

  /**
   * Sends `signal` to the group and, if anything of it still runs `graceMs` later, SIGKILL.
   * A second call sends its signal at once but keeps the first deadline.
   */
  terminate(signal: NodeJS.Signals, graceMs: number): void {
    this.signal(signal);
    this.killTimer ??= setTimeout(() => {
      if (this.hasMembers()) this.signal('SIGKILL');
    }, graceMs);
  }

  /** Whether any process of the group still runs (zombies do not count, where `/proc` tells them apart). */
  hasMembers(): boolean {
    try {
      process.kill(-this.pgid, 0);
    } catch (error) {
      // EPERM: a member changed its user (a setuid program); it still runs.
      return errorCode(error) !== 'ESRCH';
    }
    if (process.platform !== 'linux') return true;
    try {
      return hasLiveMemberInProc(this.pgid);
    } catch {
      return true; // no readable /proc: trust kill()
    }
  }

  /** Resolves once nothing of the group runs; looks every 100 ms. */
  async untilEmpty(): Promise<void> {
    while (this.hasMembers()) await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }

  /** Stops the SIGKILL deadline of {@link terminate}. */
  dispose(): void {
    clearTimeout(this.killTimer);
  }
}
