import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { describe, expect } from 'vitest';
import {
  PortAllocator,
  isPortleaseError,
  PortsExhaustedError,
  OwnerNotAliveError,
  claimPorts,
  findSequentialPorts,
  release,
} from '../../src/index.js';
import type { ClaimRecord } from '../../src/store/store.js';
import { distEntry, exited, forkFixture, killAll, nextMessage } from '../helpers/processes.js';
import { canBind, close, freeRunBase, listen } from '../helpers/sockets.js';
import { stateTest, storedClaims as readStoredClaims } from '../helpers/state-dir.js';

const it = stateTest;

function storedClaims(allocator: PortAllocator): ClaimRecord[] {
  return readStoredClaims(allocator.stateFile);
}

describe('the seed contract (findSequentialPorts)', () => {
  it('returns one free port at or above the default base 8090', async ({ stateDir }) => {
    const ports = await findSequentialPorts({ stateDir });
    expect(ports).toHaveLength(1);
    expect(ports[0]).toBeGreaterThanOrEqual(8090);
    expect(await canBind(ports[0]!)).toBe(true);
    await allocatorFor(stateDir).release(ports);
  });

  it('returns `count` consecutive ports, each bindable', async ({ allocator }) => {
    const base = await freeRunBase(3);
    const ports = await allocator.findSequentialPorts({ base, count: 3 });
    expect(ports).toEqual([base, base + 1, base + 2]);
    for (const port of ports) expect(await canBind(port)).toBe(true);
  });

  it('accepts the positional form (base, count, host)', async ({ stateDir }) => {
    const base = await freeRunBase(2);
    process.env.PORTLEASE_STATE_DIR = stateDir;
    try {
      const ports = await findSequentialPorts(base, 2, '127.0.0.1');
      expect(ports).toEqual([base, base + 1]);
      expect(await release(ports)).toEqual(ports);
    } finally {
      delete process.env.PORTLEASE_STATE_DIR;
    }
  });

  it('skips a whole run that has one busy port in it', async ({ allocator }) => {
    const base = await freeRunBase(6);
    const blocker = await listen(base + 1, '0.0.0.0');
    try {
      const ports = await allocator.findSequentialPorts({ base, count: 3 });
      expect(ports).toEqual([base + 2, base + 3, base + 4]);
      // The claim that covered the busy port was swapped out, not left behind.
      expect(storedClaims(allocator).map((claim) => claim.start)).toEqual([base + 2]);
    } finally {
      await close(blocker);
    }
  });

  it('works on host 127.0.0.1', async ({ allocator }) => {
    const base = await freeRunBase(2);
    const ports = await allocator.findSequentialPorts({ base, count: 2, host: '127.0.0.1' });
    expect(ports).toEqual([base, base + 1]);
    for (const port of ports) expect(await canBind(port, '127.0.0.1')).toBe(true);
  });

  it('stops at 65535 and raises PORTLEASE_EXHAUSTED naming the searched range', async ({ allocator }) => {
    const blocker = await listen(65535, '0.0.0.0').catch(() => undefined);
    try {
      // Whether 65535 is busy (our blocker) or merely claimed by us, a second claim cannot fit.
      if (blocker === undefined) await allocator.claim({ base: 65535 });
      const error = await allocator.claim({ base: 65535 }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(PortsExhaustedError);
      expect(isPortleaseError(error, 'PORTLEASE_EXHAUSTED')).toBe(true);
      expect((error as Error).message).toContain('65535-65535');
      // Nothing of the failed search was left claimed.
      expect(storedClaims(allocator).filter((claim) => claim.start === 65535).length).toBe(blocker === undefined ? 1 : 0);
    } finally {
      if (blocker) await close(blocker);
    }
  });

  it('searches the whole range above base before giving up', async ({ allocator }) => {
    // Claim everything from base up to the highest port allowed, then ask for two more.
    const base = await freeRunBase(6);
    await allocator.claim({ base, count: 6, max: base + 5 });
    const error = await allocator.claim({ base, count: 2, max: base + 5 }).catch((caught: unknown) => caught);
    expect(isPortleaseError(error, 'PORTLEASE_EXHAUSTED')).toBe(true);
    expect((error as Error).message).toContain(`No run of 2 consecutive free ports in ${base}-${base + 5} (max)`);
  });
});

function allocatorFor(dir: string): PortAllocator {
  return new PortAllocator({ stateDir: dir });
}

describe('claims within one process', () => {
  it('recreates a state directory that a temp cleaner removed under a running process', async ({ stateDir, allocator }) => {
    const base = await freeRunBase(2);
    const first = await allocator.claim({ base });
    rmSync(stateDir, { recursive: true, force: true });
    const second = await allocator.claim({ base });
    // The old claim's record went with the directory, but its port token still holds the port:
    // the new claim, recorded in a new state file, takes the next one.
    expect(second.port).toBe(base + 1);
    expect(storedClaims(allocator).map((claim) => claim.start)).toEqual([base + 1]);
    await first.release();
    expect(storedClaims(allocator)).toHaveLength(1);
  });

  it('hands 50 concurrent calls disjoint ports', async ({ allocator }) => {
    const base = await freeRunBase(1);
    const results = await Promise.all(Array.from({ length: 50 }, () => allocator.findSequentialPorts({ base, count: 2 })));
    const all = results.flat();
    expect(new Set(all).size).toBe(100);
    for (const ports of results) expect(ports[1]).toBe(ports[0]! + 1);
    expect(storedClaims(allocator)).toHaveLength(50);
  });

  it('does not hand out a claimed port again, and hands it out after release', async ({ allocator }) => {
    const base = await freeRunBase(4);
    const first = await allocator.claim({ base, count: 2 });
    const second = await allocator.claim({ base, count: 2 });
    expect(second.ports).toEqual([base + 2, base + 3]);
    await first.release();
    await first.release(); // twice is harmless
    const third = await allocator.claim({ base, count: 2 });
    expect(third.ports).toEqual([base, base + 1]);
  });

  it('releases at the end of an `await using` scope', async ({ stateDir, allocator }) => {
    const base = await freeRunBase(1);
    {
      await using lease = await claimPorts({ stateDir, base, label: 'scoped' });
      expect(lease.port).toBe(base);
      expect((await allocator.list()).map((claim) => claim.label)).toEqual(['scoped']);
    }
    expect(await allocator.list()).toEqual([]);
  });

  it('releases single ports out of a run, keeping the rest claimed', async ({ allocator }) => {
    const base = await freeRunBase(3);
    await allocator.claim({ base, count: 3 });
    expect(await allocator.release(base + 1)).toEqual([base + 1]);
    const held = (await allocator.list()).flatMap((claim) => claim.ports);
    expect(held).toEqual([base, base + 2]);
    expect(await allocator.release([base + 1, 1234])).toEqual([]);
  });

  it('lists claims with owner, label and creation time', async ({ allocator }) => {
    const base = await freeRunBase(2);
    const before = Date.now();
    await allocator.claim({ base, count: 2, label: 'api' });
    const [info] = await allocator.list();
    expect(info).toMatchObject({ ports: [base, base + 1], pid: process.pid, label: 'api', host: '0.0.0.0', live: true });
    expect(info!.createdAt.getTime()).toBeGreaterThanOrEqual(before);
  });

  it('lets a claim with ttlMs expire whatever its owner does', async ({ allocator }) => {
    const base = await freeRunBase(1);
    await allocator.claim({ base, ttlMs: 50 });
    expect((await allocator.list()).length).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(await allocator.list()).toEqual([]);
    expect((await allocator.list({ includeDead: true })).length).toBe(1);
    expect(await allocator.reap()).toBe(1);
    expect(storedClaims(allocator)).toEqual([]);
  });
});

describe('claims across processes', () => {
  it('reaps the claim of an owner killed with SIGKILL', async ({ stateDir, allocator }) => {
    const base = await freeRunBase(2);
    const child = forkFixture('hold-lease.mjs', [stateDir, String(base), '2']);
    try {
      const { ports } = await nextMessage<{ ports: number[] }>(child);
      expect(ports).toEqual([base, base + 1]);
      // While it lives, its ports are not handed out again.
      expect((await allocator.claim({ base, count: 2 })).ports).toEqual([base + 2, base + 3]);
      child.kill('SIGKILL');
      await exited(child);
      expect((await allocator.claim({ base, count: 2 })).ports).toEqual([base, base + 1]);
      expect(storedClaims(allocator).some((claim) => claim.pid === child.pid)).toBe(false);
    } finally {
      killAll([child]);
    }
  });

  it('releases a child’s claims when it exits normally', async ({ stateDir, allocator }) => {
    const base = await freeRunBase(2);
    const child = forkFixture('hold-lease.mjs', [stateDir, String(base), '2']);
    try {
      await nextMessage(child);
      expect(storedClaims(allocator).some((claim) => claim.pid === child.pid)).toBe(true);
      child.send('exit');
      expect((await exited(child)).code).toBe(0);
      // Removed from the file by the exiting child itself, not merely reapable.
      expect(storedClaims(allocator).some((claim) => claim.pid === child.pid)).toBe(false);
    } finally {
      killAll([child]);
    }
  });

  it('releases only its own thread’s claims when a worker thread ends, not the whole process’s', async ({ stateDir }) => {
    const base = await freeRunBase(2);
    const child = forkFixture('threads-claim.mjs', [stateDir, String(base)]);
    try {
      const report = await nextMessage<{ main: number; worker: number; left: number[] }>(child);
      expect(report.worker).toBe(report.main + 1);
      // The main thread's claim survives the worker's exit; the worker's own is gone.
      expect(report.left).toEqual([report.main]);
    } finally {
      killAll([child]);
    }
  });

  it('gives every claim of every worker thread its own id and port', async ({ stateDir }) => {
    const base = await freeRunBase(1);
    const child = forkFixture('threads-many.mjs', [stateDir, String(base)]);
    try {
      const { ports, claims } = await nextMessage<{ ports: number[]; claims: Array<{ id: string; port: number }> }>(child, 25_000);
      expect(new Set(ports).size).toBe(100);
      expect(claims).toHaveLength(100);
      expect(new Set(claims.map((claim) => claim.id)).size).toBe(100);
    } finally {
      killAll([child]);
    }
  });

  it('never releases another live process’s claim', async ({ stateDir, allocator }) => {
    const base = await freeRunBase(2);
    const child = forkFixture('hold-lease.mjs', [stateDir, String(base), '2']);
    try {
      const { ports } = await nextMessage<{ ports: number[] }>(child);
      expect(await allocator.release(ports)).toEqual([]);
      expect(await allocator.release()).toEqual([]);
      expect(storedClaims(allocator).some((claim) => claim.pid === child.pid)).toBe(true);
      child.send('release');
      await nextMessage(child);
      expect(storedClaims(allocator)).toEqual([]);
    } finally {
      killAll([child]);
    }
  });

  it('keeps a claim made with `pid` exactly as long as that process lives', async ({ allocator }) => {
    const base = await freeRunBase(1);
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)'], { stdio: 'ignore' });
    try {
      const lease = await allocator.claim({ base, pid: sleeper.pid! });
      expect(lease.pid).toBe(sleeper.pid);
      expect((await allocator.list()).map((claim) => claim.pid)).toEqual([sleeper.pid]);
      expect((await allocator.claim({ base })).port).toBe(base + 1);
      sleeper.kill('SIGTERM');
      await exited(sleeper);
      expect((await allocator.list()).map((claim) => claim.pid)).toEqual([process.pid]);
      expect((await allocator.claim({ base })).port).toBe(base);
    } finally {
      killAll([sleeper]);
    }
  });

  it('keeps no process alive: a script that only claims exits by itself and releases on the way out', async ({ stateDir, allocator }) => {
    const base = await freeRunBase(2);
    const script = `import { claimPorts } from ${JSON.stringify(distEntry)};
      const lease = await claimPorts({ stateDir: ${JSON.stringify(stateDir)}, base: ${base}, count: 2 });
      console.log(lease.ports.join(' '));`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      const { code, signal } = await exited(child, 10_000);
      expect(signal).toBeNull();
      expect(code).toBe(0);
      expect(output.trim()).toBe(`${base} ${base + 1}`);
      expect(storedClaims(allocator).some((claim) => claim.pid === child.pid)).toBe(false);
    } finally {
      killAll([child]);
    }
  });

  it('refuses to claim for a process that is not running', async ({ allocator }) => {
    const gone = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' });
    await exited(gone);
    const error = await allocator.claim({ pid: gone.pid! }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(OwnerNotAliveError);
  });
});
