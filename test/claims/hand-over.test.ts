import { spawn } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isPortleaseError, PortAllocator } from '../../src/index.js';
import { exited, freeRunBase, makeStateDir } from '../helpers.js';

let stateDir: string;
let cleanup: () => void;
beforeEach(() => ({ dir: stateDir, cleanup } = makeStateDir()));
afterEach(() => cleanup());

describe('PortAllocator.handOver', () => {
  it("keeps a dead owner's claim live by giving it to this process; its lease still releases it", async () => {
    const allocator = new PortAllocator({ stateDir });
    const base = await freeRunBase(2);
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)'], { stdio: 'ignore' });
    try {
      const lease = await allocator.claim({ base, count: 2, pid: child.pid!, label: 'kept' });
      child.kill('SIGKILL');
      await exited(child);
      expect(await allocator.list()).toEqual([]); // dead owner: no longer live
      expect(await allocator.handOver([base + 1], child.pid!)).toBe(1);
      expect(await allocator.list()).toMatchObject([{ ports: [base, base + 1], pid: process.pid, label: 'kept', live: true }]);
      // A new claim from the same base passes over them.
      const other = await allocator.claim({ base, count: 1 });
      expect(other.port).toBeGreaterThan(base + 1);
      await other.release();
      await lease.release();
      expect(await allocator.list({ includeDead: true })).toEqual([]);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('changes nothing for ports the PID does not hold, and refuses a dead new owner', async () => {
    const allocator = new PortAllocator({ stateDir });
    const lease = await allocator.claim({ count: 1 });
    expect(await allocator.handOver(lease.port, process.pid + 100_000)).toBe(0);
    const error = await allocator.handOver(lease.port, process.pid, 2 ** 31).catch((caught: unknown) => caught);
    expect(isPortleaseError(error, 'PORTLEASE_OWNER_NOT_ALIVE')).toBe(true);
    expect(await allocator.list()).toMatchObject([{ ports: [lease.port], pid: process.pid }]);
    await lease.release();
  });
});
