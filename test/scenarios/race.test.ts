import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exited, forkFixture, killAll, nextMessage } from '../helpers/processes.js';
import { makeStateDir } from '../helpers/state-dir.js';

const PROCESSES = 16;
const PORTS_EACH = 3;
const ROUNDS = 3;

interface Report {
  ports?: number[];
  bound?: string[];
  latencyMs?: number;
  error?: string;
}

// The property portlease exists for: processes started at the same instant, all asking for
// ports from the same base, never receive the same port, and every port they get binds.
describe(`cross-process race: ${PROCESSES} processes × ${PORTS_EACH} ports × ${ROUNDS} rounds`, () => {
  let stateDir: string;
  let cleanup: () => void;
  beforeAll(() => ({ dir: stateDir, cleanup } = makeStateDir()));
  afterAll(() => cleanup());

  const rounds = Array.from({ length: ROUNDS }, (_, index) => ({ round: index + 1, skewMs: 0 }));
  // Half the contenders with a wall clock 3 s ahead (NFS server skew, a clock step): lock
  // staleness must not depend on comparing clocks, and the fencing would catch it if it did.
  rounds.push({ round: ROUNDS + 1, skewMs: 3000 });
  for (const { round, skewMs } of rounds) {
    it(`round ${round}${skewMs === 0 ? '' : `, half the clocks ${skewMs} ms ahead`}: no port handed out twice, every port bindable`, async () => {
      // Below the ephemeral range (32768 on Linux), which claims skip by default.
      const base = 20_000 + Math.floor(Math.random() * 12_000);
      const children: ChildProcess[] = [];
      try {
        for (let i = 0; i < PROCESSES; i++) {
          const env = i % 2 === 1 && skewMs !== 0 ? { PORTLEASE_TEST_CLOCK_SKEW_MS: String(skewMs) } : {};
          children.push(forkFixture('race-claimer.mjs', [stateDir, String(base), String(PORTS_EACH)], env));
        }
        await Promise.all(children.map((child) => nextMessage(child)));
        const startAt = Date.now() + 300;
        const reports = children.map((child) => nextMessage<Report>(child, 30_000));
        for (const child of children) child.send({ startAt });
        const results = await Promise.all(reports);

        expect(results.filter((result) => result.error !== undefined)).toEqual([]);
        const all = results.flatMap((result) => result.ports!);
        expect(all).toHaveLength(PROCESSES * PORTS_EACH);
        expect(new Set(all).size).toBe(all.length);
        for (const result of results) {
          expect(result.ports![PORTS_EACH - 1]! - result.ports![0]!).toBe(PORTS_EACH - 1);
          expect(result.bound).toEqual(Array(PORTS_EACH).fill('ok'));
        }
        for (const child of children) child.send('done');
        await Promise.all(children.map((child) => exited(child)));
      } finally {
        killAll(children);
      }
    });
  }
});
