import { spawn } from 'node:child_process';
import { describe, expect } from 'vitest';
import { isPortleaseError, PortAllocator } from '../../src/index.js';
import { exited } from '../helpers/processes.js';
import { freeRunBase } from '../helpers/sockets.js';
import { stateTest } from '../helpers/state-dir.js';

const it = stateTest;

describe('PortAllocator.share', () => {
  it('gives a live second owner a copy that holds the ports after the first owner dies', async ({ stateDir }) => {
    const allocator = new PortAllocator({ stateDir });
    const base = await freeRunBase(2);
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)'], { stdio: 'ignore' });
    try {
      await allocator.claim({ base, count: 2, pid: child.pid!, label: 'kept' });
      expect(await allocator.share([base + 1], child.pid!)).toBe(1);
      child.kill('SIGKILL');
      await exited(child);
      // The first owner is dead; the copy, owned by this process, holds the same run.
      expect(await allocator.list()).toMatchObject([{ ports: [base, base + 1], pid: process.pid, label: 'kept', live: true }]);
      const other = await allocator.claim({ base, count: 1 });
      expect(other.port).toBeGreaterThan(base + 1);
      await other.release();
      expect(await allocator.releaseWhere({ pid: process.pid, label: 'kept' })).toEqual([base, base + 1]);
      expect(await allocator.list()).toEqual([]);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('changes nothing for ports the PID does not hold, and refuses a dead new owner', async ({ stateDir }) => {
    const allocator = new PortAllocator({ stateDir });
    const lease = await allocator.claim({ count: 1 });
    expect(await allocator.share(lease.port, process.pid + 100_000)).toBe(0);
    const error = await allocator.share(lease.port, process.pid, 2 ** 31).catch((caught: unknown) => caught);
    expect(isPortleaseError(error, 'PORTLEASE_OWNER_NOT_ALIVE')).toBe(true);
    expect(await allocator.list()).toMatchObject([{ ports: [lease.port], pid: process.pid }]);
    await lease.release();
  });
});
