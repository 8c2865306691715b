import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { currentBootId } from '../../src/base/proc.js';
import { currentStartTime, isOwnerAlive, readStartTime } from '../../src/liveness/liveness.js';
import { exited } from '../helpers/processes.js';

const linux = process.platform === 'linux';

describe('liveness', () => {
  it('sees this process alive, with its own start time', () => {
    expect(isOwnerAlive(process.pid, currentStartTime())).toBe(true);
    if (linux) expect(currentStartTime()).toMatch(/^\d+$/);
  });

  it('sees an exited process dead', async () => {
    const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
    await exited(child);
    expect(readStartTime(child.pid!)).toBeNull();
    expect(isOwnerAlive(child.pid!, undefined)).toBe(false);
  });

  it.skipIf(!linux)('tells a reused PID from its original owner by the start time', () => {
    const actual = currentStartTime()!;
    expect(isOwnerAlive(process.pid, String(Number(actual) - 1))).toBe(false);
  });

  it.skipIf(!linux)('counts a zombie (exited, not yet reaped by its parent) as dead', async () => {
    // The shell execs a sleeper whose child exits at once; the sleeper never waits for it.
    const parent = spawn('sh', ['-c', 'sh -c "exit 0" & exec sleep 5'], { stdio: 'ignore' });
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const { execFileSync } = await import('node:child_process');
      const children = execFileSync('ps', ['-o', 'pid=,stat=', '--ppid', String(parent.pid)], { encoding: 'utf8' })
        .trim()
        .split('\n');
      const zombie = children.map((line) => line.trim().split(/\s+/)).find(([, stat]) => stat?.startsWith('Z'));
      expect(zombie).toBeDefined();
      expect(isOwnerAlive(Number(zombie![0]), undefined)).toBe(false);
    } finally {
      parent.kill('SIGKILL');
    }
  });

  it.skipIf(!linux)('reads the boot id', () => {
    expect(currentBootId()).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('trusts the PID when no start time was recorded', () => {
    expect(isOwnerAlive(process.pid, undefined)).toBe(true);
  });
});
