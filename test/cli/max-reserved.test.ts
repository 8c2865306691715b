import { readFileSync, writeFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { PortAllocator, PortsExhaustedError } from '../../src/index.js';
import { freeRunBase } from '../helpers/sockets.js';
import { snapshotDir, stateTest } from '../helpers/state-dir.js';
import { listClaims, runCli } from './run-cli.js';

const RESERVED = '/proc/sys/net/ipv4/ip_local_reserved_ports';

/** Whether this process can change the reserved ports for real (Linux, root, a writable sysctl). */
function canReservePorts(): boolean {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  try {
    writeFileSync(RESERVED, readFileSync(RESERVED, 'utf8'));
    return true;
  } catch {
    return false;
  }
}

const it = stateTest;

describe('--max and max', () => {
  it('never hands out a port above max, and the exhausted error names the bound', async ({ stateDir }) => {
    const base = await freeRunBase(3);
    const first = await runCli(['claim', '--count', '2', '--base', String(base), '--max', String(base + 2), '--state-dir', stateDir]);
    expect(first).toMatchObject({ code: 0, stdout: `${base} ${base + 1}\n` });
    const claimIds = async (): Promise<string[]> => (await listClaims(stateDir)).map((claim) => claim.id);
    const before = await claimIds();
    const second = await runCli(['claim', '--count', '2', '--base', String(base), '--max', String(base + 2), '--state-dir', stateDir]);
    expect(second).toMatchObject({ code: 3, stdout: '' });
    expect(second.stderr).toContain(`PORTLEASE_EXHAUSTED: No run of 2 consecutive free ports in ${base}-${base + 2} (max)`);
    expect(await claimIds()).toEqual(before);
    // Without the bound the same claim goes on upwards.
    expect((await runCli(['claim', '--count', '2', '--base', String(base), '--state-dir', stateDir])).code).toBe(0);
  });

  it('refuses a max that leaves no room, as a usage error before anything is touched', async ({ stateDir }) => {
    const result = await runCli(['claim', '--count', '3', '--base', '9000', '--max', '9001', '--state-dir', stateDir]);
    expect(result).toMatchObject({ code: 2, stdout: '' });
    expect(result.stderr).toContain('Expected option `max` to leave room for 3 ports from base 9000 (at least 9002), got 9001.');
    expect(snapshotDir(stateDir)).toEqual({});
    const allocator = new PortAllocator({ stateDir });
    await expect(allocator.claim({ base: 9000, max: 8999 })).rejects.toThrow(RangeError);
    await expect(allocator.claim({ max: 70000 })).rejects.toThrow(/`max` to be an integer from 1 to 65535, got 70000/);
    await expect(allocator.claim({ max: '9000' as unknown as number })).rejects.toThrow(TypeError);
  });

  it('carries the bound on the library error', async ({ stateDir }) => {
    const base = await freeRunBase(1);
    const allocator = new PortAllocator({ stateDir });
    const lease = await allocator.claim({ base, max: base });
    const error = await allocator.claim({ base, max: base }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(PortsExhaustedError);
    expect(error).toMatchObject({ base, count: 1, max: base });
    await lease.release();
  });
});

describe('reserved ports', () => {
  it.skipIf(!canReservePorts())(
    'skips a port in ip_local_reserved_ports by default and names it (needs root and a writable sysctl, else skipped)',
    async ({ stateDir }) => {
      const base = await freeRunBase(3);
      const previous = readFileSync(RESERVED, 'utf8');
      // The sysctl is shared by the whole network namespace: reserve one port, briefly, and restore.
      writeFileSync(RESERVED, previous.trim() === '' ? String(base) : `${previous.trim()},${base}`);
      try {
        const skipped = await runCli(['claim', '--base', String(base), '--state-dir', stateDir]);
        expect(skipped).toMatchObject({ code: 0, stdout: `${base + 1}\n` });
        const exhausted = await runCli(['claim', '--base', String(base), '--max', String(base), '--state-dir', stateDir]);
        expect(exhausted.code).toBe(3);
        expect(exhausted.stderr).toContain(`reserved ports ${base} (ip_local_reserved_ports)`);
        const allowed = await runCli(['claim', '--base', String(base), '--allow-reserved', '--state-dir', stateDir]);
        expect(allowed).toMatchObject({ code: 0, stdout: `${base}\n` });
      } finally {
        writeFileSync(RESERVED, previous);
      }
      expect(readFileSync(RESERVED, 'utf8')).toBe(previous);
    },
  );
});
