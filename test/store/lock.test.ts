import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { LockTimeoutError, PortAllocator } from '../../src/index.js';
import { StateLock } from '../../src/store/lock.js';
import { exited, forkFixture, killAll, nextMessage } from '../helpers/processes.js';
import { freeRunBase } from '../helpers/sockets.js';
import { stateTest, storedClaims } from '../helpers/state-dir.js';

const it = stateTest;

describe('StateLock', () => {
  it('runs the queued calls of one process one at a time and leaves no lock behind', async ({ stateDir }) => {
    const lock = new StateLock(`${stateDir}/target`, { timeoutMs: 0, staleMs: 1000 });
    let inside = 0;
    let maxInside = 0;
    await Promise.all(
      Array.from({ length: 20 }, () =>
        lock.runExclusive(() => {
          inside++;
          maxInside = Math.max(maxInside, inside);
          inside--;
        }),
      ),
    );
    expect(maxInside).toBe(1);
    expect(existsSync(lock.lockPath)).toBe(false);
  });

  it('times out with PORTLEASE_LOCK_TIMEOUT while another process holds the lock', async ({ stateDir }) => {
    const holder = forkFixture('hold-lock.mjs', [stateDir]);
    try {
      expect(await nextMessage(holder)).toEqual({ locked: true });
      const allocator = new PortAllocator({ stateDir, lockTimeoutMs: 300, staleMs: 10_000 });
      const started = Date.now();
      const error = await allocator.claim().catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(LockTimeoutError);
      expect((error as LockTimeoutError).code).toBe('PORTLEASE_LOCK_TIMEOUT');
      expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    } finally {
      killAll([holder]);
      await exited(holder);
    }
  });

  it('recovers from a holder killed with SIGKILL inside the lock, within the stale time, corrupting nothing', async ({ stateDir }) => {
    const staleMs = 2000;
    const allocator = new PortAllocator({ stateDir, staleMs, lockTimeoutMs: 10_000 });
    const base = await freeRunBase(2);
    const before = await allocator.claim({ base });
    const claimsBefore = storedClaims(allocator.stateFile);

    const holder = forkFixture('hold-lock.mjs', [stateDir]);
    try {
      expect(await nextMessage(holder)).toEqual({ locked: true });
      const lockedAt = Date.now();
      holder.kill('SIGKILL');
      await exited(holder);
      const after = await allocator.claim({ base });
      const waited = Date.now() - lockedAt;
      // The wait is bounded by the stale time (plus a retry interval and scheduling slack).
      expect(waited).toBeGreaterThanOrEqual(staleMs);
      expect(waited).toBeLessThan(staleMs + 1500);
      expect(after.port).toBe(before.port + 1);
      // The state written before the crash survived intact and was extended.
      const claims = storedClaims(allocator.stateFile);
      expect(claims.slice(0, 1)).toEqual(claimsBefore);
      expect(claims).toHaveLength(2);
    } finally {
      killAll([holder]);
      await allocator.release();
    }
  });

  it('a holder stalled past the stale time, whose lock was broken, does not remove its successor’s lock', async ({ stateDir }) => {
    // A stalls 3 s holding the lock; B breaks it after the stale time (2 s) and holds it
    // 1.8 s (less than the stale time); A wakes up and releases while B is inside; C arrives
    // then and must wait for B.
    const a = forkFixture('stalling-holder.mjs', [stateDir, '0', '3000', '2000']);
    const b = forkFixture('stalling-holder.mjs', [stateDir, '300', '1800', '2000']);
    const c = forkFixture('stalling-holder.mjs', [stateDir, '3200', '100', '2000']);
    try {
      // Start instants are set once all three have loaded: a loaded machine must not reorder them.
      await Promise.all([a, b, c].map((child) => nextMessage(child)));
      const startAt = Date.now() + 200;
      for (const child of [a, b, c]) child.send({ startAt });
      type Report = { entered: number; left: number; stillHeld: boolean };
      const [ra, rb, rc] = await Promise.all([a, b, c].map((child) => nextMessage<Report>(child, 25_000)));
      expect(rb!.entered).toBeGreaterThanOrEqual(ra!.entered + 2000);
      expect(ra!.stillHeld).toBe(false);
      expect(ra!.left).toBeLessThan(rb!.left);
      // C never overlaps B: A's release did not remove B's lock.
      expect(rc!.entered).toBeGreaterThanOrEqual(rb!.left);
      expect(rb!.stillHeld).toBe(true);
    } finally {
      killAll([a, b, c]);
    }
  });

  it('gives up on a stale lock it cannot remove with PORTLEASE_LOCK_TIMEOUT and the reason, instead of spinning', async ({ stateDir }) => {
    const allocator = new PortAllocator({ stateDir, staleMs: 2000, lockTimeoutMs: 3000 });
    // A lock directory that rmdir cannot remove: something inside it (an NFS .nfsXXXX file).
    mkdirSync(`${allocator.stateFile}.lock`, { recursive: true });
    writeFileSync(`${allocator.stateFile}.lock/.nfs0001`, '');
    const error = await allocator.claim({ base: await freeRunBase(1) }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(LockTimeoutError);
    expect((error as LockTimeoutError).message).toMatch(/stale but cannot remove the stale lock .*ENOTEMPTY/);
  });

  it('lets many processes wait out one stale lock without two of them ever holding it at once', async ({ stateDir }) => {
    const holder = forkFixture('hold-lock.mjs', [stateDir]);
    const contenders: ChildProcess[] = [];
    try {
      expect(await nextMessage(holder)).toEqual({ locked: true });
      holder.kill('SIGKILL');
      await exited(holder);
      // All contenders poll the dead holder's lock and see it turn stale at the same moment.
      const startAt = String(Date.now() + 500);
      for (let i = 0; i < 8; i++) contenders.push(forkFixture('lock-contender.mjs', [stateDir, startAt, '1000', '5']));
      const reports = await Promise.all(contenders.map((child) => nextMessage<{ overlaps: number; entered: number }>(child, 25_000)));
      expect(reports.map((report) => report.entered)).toEqual(Array(8).fill(5));
      expect(reports.reduce((sum, report) => sum + report.overlaps, 0)).toBe(0);
    } finally {
      killAll([holder, ...contenders]);
    }
  });
});
