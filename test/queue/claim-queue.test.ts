import type { ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { ClaimQueue, QueueTicket } from '../../src/queue/queue-dir.js';
import { PortAllocator } from '../../src/index.js';
import { currentStartTime } from '../../src/liveness/liveness.js';
import { ownerFields } from '../../src/claims/new-claim.js';
import { queuedRequest } from '../../src/queue/request.js';
import { resolveClaimOptions } from '../../src/options/options.js';
import { statePaths } from '../../src/store/state-dir.js';
import { exited, forkFixture, killAll, nextMessage, processState, untilStopped } from '../helpers/processes.js';
import { freeRunBase } from '../helpers/sockets.js';
import { stateTest, storedClaims } from '../helpers/state-dir.js';

const it = stateTest;

// A process that finds the lock held leaves its claim request in the queue; the holder records
// it with its own change and removes the request, which wakes the requester. These tests stop
// and kill real processes at each step of that hand-off.
const linuxOnly = process.platform !== 'linux';

interface Report {
  pid?: number;
  ports?: number[];
  bound?: boolean[];
  error?: string;
}

function requestFiles(stateDir: string): string[] {
  try {
    return readdirSync(statePaths(stateDir).queueDir).filter((name) => name.endsWith('.req'));
  } catch {
    return [];
  }
}

async function untilQueued(stateDir: string, count: number, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (requestFiles(stateDir).length < count) {
    if (Date.now() > deadline) throw new Error(`only ${requestFiles(stateDir).length} of ${count} requests were queued`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** How many claims each write added to a state file that one write created: the header's, then each line's. */
function claimsAddedPerWrite(stateFile: string): number[] {
  const [header, ...lines] = readFileSync(stateFile, 'utf8').split('\n').filter(Boolean);
  const added = lines.map((line) => (JSON.parse(line) as { add?: unknown[] }).add?.length ?? 0);
  return [(JSON.parse(header!) as { claims: unknown[] }).claims.length, ...added];
}

/** A request for a claim owned by this test process, as a waiting process would leave it. */
function queueRequestOfThisProcess(
  stateDir: string,
  queue: ClaimQueue,
  id: string,
  base: number,
  until = Date.now() + 60_000,
  netns?: string,
): void {
  const request = resolveClaimOptions({ base, count: 2 });
  const body = queuedRequest({
    id,
    request,
    owner: ownerFields(stateDir, process.pid, currentStartTime()),
    ephemeralPortRange: undefined,
    socketTable: true,
    until,
    breakAfterMs: 2000,
  });
  expect(queue.enqueue(id, netns === undefined ? body : { ...body, netns })).toBeDefined();
}

function newQueue(stateDir: string): ClaimQueue {
  return new ClaimQueue(statePaths(stateDir).queueDir, { file: 0o600, dir: 0o700 });
}

/** Takes the lock by hand, as a holder would; returns what gives it back (idempotent). */
function holdLock(stateDir: string): () => void {
  const lockPath = `${statePaths(stateDir).stateFile}.lock`;
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  mkdirSync(lockPath);
  return () => rmSync(lockPath, { recursive: true, force: true });
}

/** Claimers of `ports` ports from `base` that see the lock unchanged as stale only after 20 s. */
function forkPatientClaimers(stateDir: string, count: number, base: number, ports: number, into: ChildProcess[]): void {
  for (let index = 0; index < count; index++)
    into.push(forkFixture('queued-claimer.mjs', [stateDir, String(base), String(ports), '20000']));
}

describe.skipIf(linuxOnly)('processes that find the lock held are recorded by its holder', () => {
  it('records every request queued while the lock was held in one write, even for a waiter stopped (SIGSTOP) meanwhile', async ({
    stateDir,
  }) => {
    const base = await freeRunBase(40);
    const releaseLock = holdLock(stateDir);
    const waiters: ChildProcess[] = [];
    try {
      forkPatientClaimers(stateDir, 6, base, 3, waiters);
      await untilQueued(stateDir, 6);
      const stopped = waiters[0]!;
      stopped.kill('SIGSTOP');
      await untilStopped(stopped);
      const reports = waiters.slice(1).map((waiter) => nextMessage<Report>(waiter, 30_000));
      releaseLock();
      const running = await Promise.all(reports);

      // The stopped waiter's claim was recorded by the holder while it was stopped.
      const stoppedClaim = storedClaims(statePaths(stateDir).stateFile).find((claim) => claim.pid === stopped.pid);
      expect(stoppedClaim).toBeDefined();
      const resumed = nextMessage<Report>(stopped, 30_000);
      stopped.kill('SIGCONT');
      const all = [...running, await resumed];

      for (const report of all) expect(report.error).toBeUndefined();
      expect(all.find((report) => report.pid === stopped.pid)!.ports![0]).toBe(stoppedClaim!.start);
      const ports = all.flatMap((report) => report.ports!);
      expect(ports).toHaveLength(18);
      expect(new Set(ports).size).toBe(18);
      expect(all.flatMap((report) => report.bound!).every(Boolean)).toBe(true);
      // The first holder recorded its own claim and the five others' in one line: one hand-off, not six.
      expect(claimsAddedPerWrite(statePaths(stateDir).stateFile)).toEqual([6]);
      expect(requestFiles(stateDir)).toEqual([]);
      for (const waiter of waiters) waiter.send('done');
      await Promise.all(waiters.map((waiter) => exited(waiter)));
    } finally {
      killAll(waiters);
      releaseLock();
    }
  });

  it('a waiter killed (SIGKILL) with its request queued holds nothing once reaped, and nobody waits for it', async ({ stateDir }) => {
    const base = await freeRunBase(20);
    const releaseLock = holdLock(stateDir);
    const waiters: ChildProcess[] = [];
    try {
      forkPatientClaimers(stateDir, 3, base, 2, waiters);
      await untilQueued(stateDir, 3);
      const killed = waiters[1]!;
      killed.kill('SIGKILL');
      await exited(killed);
      const reports = [waiters[0]!, waiters[2]!].map((waiter) => nextMessage<Report>(waiter, 30_000));
      releaseLock();
      const survivors = await Promise.all(reports);
      for (const report of survivors) expect(report.error).toBeUndefined();
      expect(requestFiles(stateDir)).toEqual([]);

      // Whatever the holder made of its request (recorded it, and perhaps dropped it as dead
      // while serving the next one), the killed waiter holds nothing once reaped.
      const allocator = new PortAllocator({ stateDir });
      const survivorPids = new Set(survivors.map((report) => report.pid));
      expect((await allocator.list()).every((claim) => survivorPids.has(claim.pid))).toBe(true);
      await allocator.reap();
      expect(
        storedClaims(allocator.stateFile)
          .map((claim) => claim.pid)
          .sort(),
      ).toEqual([...survivorPids].sort());
      const held = survivors.flatMap((report) => report.ports!);
      const next = await allocator.claim({ base, count: 2 });
      expect(held).not.toContain(next.ports[0]);
      expect(held).not.toContain(next.ports[1]);
      await next.release();
      for (const waiter of waiters) if (waiter !== killed) waiter.send('done');
      await Promise.all(waiters.map((waiter) => exited(waiter)));
    } finally {
      killAll(waiters);
      releaseLock();
    }
  });

  /** Holds the lock by hand, as a live holder would: its directory touched, so it never looks stale. */
  function holdLiveLock(stateDir: string): () => void {
    const releaseLock = holdLock(stateDir);
    const lockPath = `${statePaths(stateDir).stateFile}.lock`;
    const touch = setInterval(() => {
      const now = new Date();
      utimesSync(lockPath, now, now);
    }, 300);
    return () => {
      clearInterval(touch);
      releaseLock();
    };
  }

  it('a waiter that gives up (its lock timeout) takes its request back', async ({ stateDir }) => {
    const base = await freeRunBase(4);
    const release = holdLiveLock(stateDir);
    const waiter = forkFixture('queued-claimer.mjs', [stateDir, String(base), '1', '2000', '4000']);
    try {
      await untilQueued(stateDir, 1);
      const report = await nextMessage<Report>(waiter, 30_000);
      expect(report.error).toMatch(/^PORTLEASE_LOCK_TIMEOUT /);
      expect(requestFiles(stateDir)).toEqual([]);
      waiter.send('done');
      await exited(waiter);
    } finally {
      killAll([waiter]);
      release();
    }
  });

  it("a waiter with too little time to break a stalled holder's lock does not queue", async ({ stateDir }) => {
    const base = await freeRunBase(4);
    const release = holdLiveLock(stateDir);
    // 2.5 s to wait, 2 s before it breaks a lock: a holder that stalled after recording its
    // request could leave it a claim it no longer waits for.
    const waiter = forkFixture('queued-claimer.mjs', [stateDir, String(base), '1', '2000', '2500']);
    try {
      let queued = 0;
      const watch = setInterval(() => (queued = Math.max(queued, requestFiles(stateDir).length)), 5);
      const report = await nextMessage<Report>(waiter, 30_000);
      clearInterval(watch);
      expect(report.error).toMatch(/^PORTLEASE_LOCK_TIMEOUT /);
      expect(queued).toBe(0);
      waiter.send('done');
      await exited(waiter);
    } finally {
      killAll([waiter]);
      release();
    }
  });

  const holderStops = [
    { point: 'append', what: 'after recording queued claims in memory, before writing them' },
    { point: 'settle', what: 'after its line with queued claims was accepted, before removing the requests' },
  ] as const;

  it.for(holderStops)(
    'a holder stopped $what ($point): each queued claim is recorded once, no port twice',
    async ({ point }, { stateDir }) => {
      const base = await freeRunBase(20);
      const queue = newQueue(stateDir);
      mkdirSync(stateDir, { recursive: true, mode: 0o700 });
      // A state file to append to (the first write of all creates the file instead).
      await (await new PortAllocator({ stateDir }).claim({ base })).release();
      const ids = ['queued-a', 'queued-b', 'queued-c'];
      for (const id of ids) queueRequestOfThisProcess(stateDir, queue, id, base);
      const holder = forkFixture('queued-claimer.mjs', [stateDir, String(base), '1', '2000'], { PORTLEASE_TEST_PAUSE_AT: point });
      let successor: ChildProcess | undefined;
      try {
        await untilStopped(holder);
        // Stopped before writing, nothing is recorded yet; stopped before removing the requests, they are.
        const recordedWhileStopped = storedClaims(statePaths(stateDir).stateFile).filter((claim) => ids.includes(claim.id));
        expect(recordedWhileStopped).toHaveLength(point === 'settle' ? 3 : 0);
        expect(requestFiles(stateDir)).toHaveLength(3);
        successor = forkFixture('queued-claimer.mjs', [stateDir, String(base), '1', '2000']);
        // The successor finds the lock held, waits until it is stale (2 s), breaks it, and serves what is left.
        const successorReport = await nextMessage<Report>(successor, 30_000);
        expect(successorReport.error).toBeUndefined();
        const holderReport = nextMessage<Report>(holder, 30_000);
        holder.kill('SIGCONT');
        const resumed = await holderReport;
        expect(resumed.error).toBeUndefined();

        const stored = storedClaims(statePaths(stateDir).stateFile);
        for (const id of ids) expect(stored.filter((claim) => claim.id === id)).toHaveLength(1);
        const ports = stored.flatMap((claim) => Array.from({ length: claim.count }, (_, index) => claim.start + index));
        expect(new Set(ports).size).toBe(ports.length);
        expect(ports).toEqual(expect.arrayContaining([...successorReport.ports!, ...resumed.ports!]));
        expect([...successorReport.bound!, ...resumed.bound!].every(Boolean)).toBe(true);
        expect(requestFiles(stateDir)).toEqual([]);
        for (const child of [holder, successor]) child.send('done');
        await Promise.all([exited(holder), exited(successor)]);
      } finally {
        if (processState(holder.pid!) === 'T') holder.kill('SIGCONT');
        killAll(successor === undefined ? [holder] : [holder, successor]);
      }
    },
  );
});

describe('requests a holder does not record', () => {
  it('settles without a claim what it cannot read, what its owner stopped waiting for, and what another network namespace asked', async ({
    stateDir,
  }) => {
    const base = await freeRunBase(20);
    const queue = newQueue(stateDir);
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    queueRequestOfThisProcess(stateDir, queue, 'expired', base, Date.now() - 1);
    queueRequestOfThisProcess(stateDir, queue, 'elsewhere', base, undefined, 'net:[1]');
    queueRequestOfThisProcess(stateDir, queue, 'recorded', base);
    const queueDir = statePaths(stateDir).queueDir;
    writeFileSync(join(queueDir, '000000000-garbage.req'), '{"v":1,"id":"garbage","options":{"pid":"x"}');
    writeFileSync(
      join(queueDir, '000000000-wrong-count.req'),
      JSON.stringify({ v: 1, id: 'wrong', until: Date.now() + 60_000, options: { pid: process.pid, count: 0 } }),
    );
    symlinkSync('/etc/hostname', join(queueDir, '000000000-link.req'));
    // Fields beyond the owner's in the owner object must not become the claim's.
    const planted = JSON.parse(
      readFileSync(
        join(
          queueDir,
          readdirSync(queueDir).find((name) => name.includes('-recorded'))!,
        ),
        'utf8',
      ),
    );
    planted.owner = { ...planted.owner, id: 'other', start: 1, count: 9, pid: 1 };
    queue.enqueue('planted', { ...planted, id: 'planted' });

    const lease = await new PortAllocator({ stateDir }).claim({ base });
    const stored = storedClaims(statePaths(stateDir).stateFile);
    const others = stored.filter((claim) => claim.start !== lease.ports[0]);
    expect(others.map((claim) => claim.id).sort()).toEqual(['planted', 'recorded']);
    for (const claim of others) {
      expect(claim.pid).toBe(process.pid);
      expect(claim.count).toBe(2);
      expect(claim.start).toBeGreaterThanOrEqual(base);
    }
    expect(requestFiles(stateDir)).toEqual([]);
    await lease.release();
  });
});

describe('a queue ticket', () => {
  it('wakes its owner when the holder removes the request, and when it touches it', async ({ stateDir }) => {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const queue = newQueue(stateDir);
    const ticket = queue.enqueue('touched', { any: 'body' })!;
    expect(ticket).toBeInstanceOf(QueueTicket);
    expect(ticket.settled).toBe(false);
    // A fallback far beyond the test's timeout: only the file watch can end these waits.
    const touched = ticket.wait(600_000);
    setTimeout(() => queue.nudgeOldest(), 50);
    await touched;
    expect(ticket.settled).toBe(false);
    const removed = ticket.wait(600_000);
    setTimeout(() => queue.settle(queue.pending()), 50);
    await removed;
    expect(ticket.settled).toBe(true);
    ticket.withdraw();
  });

  it('nudges only the two oldest requests, and removes files left half written long ago', ({ stateDir }) => {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const queue = newQueue(stateDir);
    // Named by time, then id: in this order even when made in the same millisecond.
    const tickets = ['first', 'second', 'third'].map((name) => queue.enqueue(name, {})!);
    const queueDir = statePaths(stateDir).queueDir;
    const longAgo = new Date(Date.now() - 3_600_000);
    for (const ticket of tickets) utimesSync(ticket.path, longAgo, longAgo);
    writeFileSync(join(queueDir, '.writing-leftover'), '{');
    utimesSync(join(queueDir, '.writing-leftover'), longAgo, longAgo);
    writeFileSync(join(queueDir, '.writing-fresh'), '{');
    queue.nudgeOldest();
    const touched = tickets.map((ticket) => Math.abs(statSync(ticket.path).mtimeMs - longAgo.getTime()) > 1);
    expect(touched).toEqual([true, true, false]);
    const names = readdirSync(queueDir).sort();
    expect(names).toEqual(['.writing-fresh', ...tickets.map((ticket) => ticket.path.slice(queueDir.length + 1))].sort());
    for (const ticket of tickets) ticket.withdraw();
  });
});
