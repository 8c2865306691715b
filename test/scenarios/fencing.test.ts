import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { PortAllocator } from '../../src/index.js';
import { currentBootId } from '../../src/base/proc.js';
import { STATE_VERSION } from '../../src/store/store.js';
import { exited, forkFixture, killAll, nextMessage, untilStopped } from '../helpers/processes.js';
import { canBind, freeRunBase } from '../helpers/sockets.js';
import { stateTest, storedClaims } from '../helpers/state-dir.js';

const it = stateTest;

// A holder paused inside the lock (SIGSTOP, a suspended laptop, a VM stopped by its host)
// resumes after its lock was broken and another process claimed meanwhile. Whatever step it
// was stopped at, it must not hand out a port from its stale view, nor erase a claim.
const linuxOnly = process.platform !== 'linux';

/** A successor's claim, made in another process while the holder is stopped: `claim-once` holds it for a 60 s TTL. */
async function claimInAnotherProcess(stateDir: string, base: number): Promise<number[]> {
  const child = forkFixture('claim-once.mjs', [stateDir, String(base)]);
  try {
    const report = await nextMessage<{ ports?: number[]; message?: string }>(child, 25_000);
    if (report.ports === undefined) throw new Error(`the successor failed: ${report.message}`);
    return report.ports;
  } finally {
    await exited(child);
  }
}

/**
 * A state file whose change log outweighs its header, so the next change starts a new
 * generation (seal, then rename) instead of appending: what the `seal` and `publish`
 * points need. It holds one live claim of this test process.
 */
function writeStateDueForCompaction(stateFile: string, port: number): void {
  const bootId = currentBootId();
  const gen = 'testgeneration';
  const claim = { id: 'test-claim', start: port, count: 1, host: '0.0.0.0', pid: process.pid, createdAt: Date.now() };
  const lines = [JSON.stringify({ version: STATE_VERSION, gen, ...(bootId === undefined ? {} : { bootId }), claims: [claim] })];
  // Well past the compaction threshold (32 KiB of log).
  for (let at = 0; at < 200; at++) lines.push(JSON.stringify({ g: gen, at, w: `pad-${at}`, add: [], drop: [`none-${'x'.repeat(300)}`] }));
  writeFileSync(stateFile, `${lines.join('\n')}\n`);
}

describe.skipIf(linuxOnly)('a lock holder stopped (SIGSTOP) at each step of a change, and a successor claiming meanwhile', () => {
  const cases = [
    { point: 'append', compacting: false, what: 'after computing its change, before writing it' },
    { point: 'read-back', compacting: false, what: 'after writing its line, before reading it back' },
    { point: 'seal', compacting: true, what: 'after writing a new generation, before sealing the old one' },
    { point: 'publish', compacting: true, what: 'after sealing, before renaming the new generation into place' },
  ] as const;

  it.for(cases)('stopped $what ($point): no port twice, no claim lost', async ({ point, compacting }, { stateDir }) => {
    const base = await freeRunBase(8);
    const allocator = new PortAllocator({ stateDir });
    let earlier: number[];
    if (compacting) {
      writeStateDueForCompaction(allocator.stateFile, base);
      earlier = [base];
    } else {
      earlier = [...(await allocator.claim({ base })).ports];
    }

    const holder = forkFixture('pausable-claimer.mjs', [stateDir, String(base)], { PORTLEASE_TEST_PAUSE_AT: point });
    try {
      await untilStopped(holder);
      // The holder is stopped inside the lock: the successor waits the stale time, breaks it, claims.
      const successor = await claimInAnotherProcess(stateDir, base);
      const report = nextMessage<{ first?: number[]; second?: number[]; error?: string }>(holder, 25_000);
      holder.kill('SIGCONT');
      const { first, second, error } = await report;
      expect(error).toBeUndefined();

      const handedOut = [...earlier, ...successor, ...first!, ...second!];
      expect(new Set(handedOut).size).toBe(handedOut.length);
      // Nothing was erased: every claim handed out is in the file, once.
      const stored = storedClaims(allocator.stateFile)
        .map((claim) => claim.start)
        .sort((a, b) => a - b);
      expect(stored).toEqual([...handedOut].sort((a, b) => a - b));
      for (const port of handedOut) expect(await canBind(port)).toBe(true);
      // A void generation file is removed by the writer that made it; only the state file and its lock remain.
      expect(
        readdirSync(stateDir).filter((name) => name.startsWith('claims-') && !name.endsWith('.lock') && !name.includes('sockets')),
      ).toHaveLength(1);
      holder.send('done');
      await exited(holder);
    } finally {
      killAll([holder]);
    }
  });
});

describe.skipIf(linuxOnly)('a claiming process stopped at random moments, with a successor claiming each time', () => {
  it('never shares a port with the successors and never erases their claims (10 stops)', async ({ stateDir }) => {
    const base = await freeRunBase(4);
    const claimer = forkFixture('claim-forever.mjs', [stateDir, String(base), '400']);
    const held: number[] = [];
    const successors: number[] = [];
    let stopsInsideLock = 0;
    let finished = false;
    claimer.on('message', (message: { port?: number; error?: string; finished?: boolean }) => {
      if (message.port !== undefined) held.push(message.port);
      if (message.error !== undefined) held.push(-1);
      if (message.finished === true) finished = true;
    });
    try {
      const lockPath = `${new PortAllocator({ stateDir }).stateFile}.lock`;
      while (held.length < 3) await new Promise((resolve) => setTimeout(resolve, 10));
      for (let stop = 0; stop < 10 && !finished; stop++) {
        await new Promise((resolve) => setTimeout(resolve, Math.random() * 40));
        // Most stops should land inside the lock, where the damage would be: spin (briefly,
        // bounded) until the lock directory appears, then stop at once.
        const spinUntil = performance.now() + (stop % 3 === 2 ? 0 : 300);
        while (!existsSync(lockPath) && performance.now() < spinUntil) {
          // Polling as fast as possible.
        }
        claimer.kill('SIGSTOP');
        await untilStopped(claimer);
        if (existsSync(lockPath)) stopsInsideLock++;
        successors.push(...(await claimInAnotherProcess(stateDir, base)));
        claimer.kill('SIGCONT');
      }
      claimer.send('done');
      const deadline = Date.now() + 20_000;
      while (!finished && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(held).not.toContain(-1);
      expect(stopsInsideLock).toBeGreaterThan(0);
      expect(held.filter((port) => successors.includes(port))).toEqual([]);
      const all = [...held, ...successors];
      expect(new Set(all).size).toBe(all.length);
      const stored = new Set(storedClaims(new PortAllocator({ stateDir }).stateFile).map((claim) => claim.start));
      expect(successors.filter((port) => !stored.has(port))).toEqual([]);
      expect(held.filter((port) => !stored.has(port))).toEqual([]);
      console.info(
        `random stops: 10, inside the lock: ${stopsInsideLock}, claims: ${held.length} + ${successors.length} successors, duplicates: 0`,
      );
      claimer.send('exit');
      await exited(claimer);
    } finally {
      killAll([claimer]);
    }
  });
});
