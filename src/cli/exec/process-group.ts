import { errnoCode } from '../../base/fs.js';
import { liveProcessInGroup, procShowsOwnPidNamespace } from '../../base/proc.js';

/** How often a wait for the group to empty looks again: soon at first, then once a second. */
const FIRST_POLL_MS = 100;
const MAX_POLL_MS = 1000;

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
      if (errnoCode(error) === 'ESRCH') return false;
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
      return errnoCode(error) !== 'ESRCH';
    }
    if (process.platform !== 'linux' || !procShowsOwnPidNamespace()) return true;
    try {
      return liveProcessInGroup(this.pgid);
    } catch {
      return true; // no readable /proc: trust kill()
    }
  }

  /**
   * Resolves once nothing of the group runs, looking every 100 ms at first and then once a
   * second (each look reads every `/proc/<pid>/stat`). Deliberately unbounded, like a
   * shell's `wait`: the ports stay claimed for as long as a process of the command's group
   * runs; a signal to `portlease exec` (forwarded to the group, SIGKILL after --kill-after)
   * is the way to end it.
   */
  async untilEmpty(): Promise<void> {
    for (let delay = FIRST_POLL_MS; this.hasMembers(); delay = Math.min(delay * 2, MAX_POLL_MS)) {
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  /** Stops the SIGKILL deadline of {@link terminate}. */
  dispose(): void {
    clearTimeout(this.killTimer);
  }
}
