// One host, one port space: claims of different users, and of processes that see different
// state directories (a container on the host's network with its own /tmp), never share a
// port. Real users (useradd), real processes released at one instant, every port bound by
// its holder; a private mount namespace made with unshare.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nobodyReadableCopy, removeNobodyReadableCopy } from '../helpers/nobody.js';
import { exited, killAll } from '../helpers/processes.js';
import { freeRunBase } from '../helpers/sockets.js';
import {
  type Claimed,
  firstJsonLine,
  sharedTmp,
  spawnFixtureAs,
  testUsers,
  twoUsersUnavailable,
  type TestUser,
  userEnv,
} from '../helpers/users.js';

const ROUNDS = 3;
const PER_SIDE = 6;
const COUNT = 3;

/** Duplicated ports among the claims, and claims whose holder could not bind every port. */
function verdict(claims: readonly Claimed[]): { claimers: number; ports: number; duplicates: number[]; unbound: number; errors: string[] } {
  const seen = new Map<number, number>();
  for (const claim of claims) for (const port of claim.ports ?? []) seen.set(port, (seen.get(port) ?? 0) + 1);
  return {
    claimers: claims.length,
    ports: [...seen.values()].reduce((sum, n) => sum + n, 0),
    duplicates: [...seen].filter(([, n]) => n > 1).map(([port]) => port),
    unbound: claims.filter((claim) => claim.bound === false).length,
    errors: claims.flatMap((claim) => (claim.error === undefined ? [] : [`${claim.code}: ${claim.error}`])),
  };
}

const unavailable = twoUsersUnavailable();

// Every process a test starts, killed and waited for before its directories go: one still
// releasing its claim would write into a directory being removed.
const started: ChildProcess[] = [];
function track<T extends ChildProcess>(child: T): T {
  started.push(child);
  return child;
}
async function stopAll(): Promise<void> {
  killAll(started);
  await Promise.all(started.splice(0).map((child) => exited(child)));
}

describe.skipIf(unavailable !== undefined)(
  `two users, one network namespace${unavailable === undefined ? '' : ` (${unavailable})`}`,
  () => {
    let users: [TestUser, TestUser];
    let tmp: { dir: string; cleanup: () => void };
    beforeAll(() => {
      users = testUsers();
      tmp = sharedTmp();
      nobodyReadableCopy();
    });
    afterAll(async () => {
      await stopAll();
      tmp.cleanup();
      removeNobodyReadableCopy();
    });

    it(`${PER_SIDE} claimers per user from one base, released at one instant, ${ROUNDS} rounds: no port twice, every port bound`, async () => {
      const report: string[] = [];
      for (let round = 1; round <= ROUNDS; round++) {
        const base = await freeRunBase(2 * PER_SIDE * COUNT + 20);
        const startAt = Date.now() + 2500;
        const children = users.flatMap((user) =>
          Array.from({ length: PER_SIDE }, () =>
            track(spawnFixtureAs(user, 'user-claimer.mjs', [String(base), String(COUNT), String(startAt), '3000'], userEnv(tmp.dir))),
          ),
        );
        try {
          const claims = await Promise.all(children.map((child) => firstJsonLine<Claimed>(child)));
          const result = verdict(claims);
          report.push(
            `round ${round}: ${result.claimers} claimers, ${result.ports} ports, ${result.duplicates.length} duplicates, ${result.unbound} unbound`,
          );
          expect(result.errors).toEqual([]);
          expect(result.duplicates).toEqual([]);
          expect(result.unbound).toBe(0);
          expect(new Set(claims.map((claim) => claim.uid))).toEqual(new Set(users.map((user) => user.uid)));
        } finally {
          killAll(children);
        }
      }
      console.log(`two users: ${report.join('; ')}`);
    });

    it('a CLI claim holds against the other user while the shell that made it lives, and no longer', async () => {
      const [a, b] = users;
      const base = await freeRunBase(20);
      const cli = `${nobodyReadableCopy().distEntry.replace(/index\.js$/, 'cli.cjs')}`;
      // a's shell claims two ports from the command line, then lives on for a while.
      const shell = track(
        spawn('sh', ['-c', `P=$("${process.execPath}" "${cli}" claim --count 2 --base ${base} --label shell-of-a); echo "$P"; sleep 4`], {
          env: userEnv(tmp.dir),
          uid: a.uid,
          gid: a.gid,
          stdio: ['ignore', 'pipe', 'pipe'],
        }),
      );
      try {
        const held = await new Promise<number[]>((resolve, reject) => {
          shell.stdout.once('data', (chunk: Buffer) => resolve(chunk.toString().trim().split(' ').map(Number)));
          shell.once('exit', () => reject(new Error('the shell ended before printing its ports')));
        });
        expect(held).toEqual([base, base + 1]);
        // The CLI is gone; b's claimers, released together, keep off a's ports.
        const startAt = Date.now() + 1500;
        const children = Array.from({ length: PER_SIDE }, () =>
          track(spawnFixtureAs(b, 'user-claimer.mjs', [String(base), '1', String(startAt), '500'], userEnv(tmp.dir))),
        );
        const claims = await Promise.all(children.map((child) => firstJsonLine<Claimed>(child)));
        expect(verdict(claims).errors).toEqual([]);
        expect(claims.flatMap((claim) => claim.ports!).filter((port) => held.includes(port))).toEqual([]);
        // b sees a's claim in `portlease list`, as not its own.
        const list = spawnSync(process.execPath, [cli, 'list', '--json'], {
          env: userEnv(tmp.dir),
          uid: b.uid,
          gid: b.gid,
          encoding: 'utf8',
        });
        const listed = JSON.parse(list.stdout) as { elsewhere: Array<{ ports: number[]; uid: number; user: string; label: string }> };
        expect(listed.elsewhere).toContainEqual(expect.objectContaining({ ports: held, uid: a.uid, user: a.name, label: 'shell-of-a' }));
        // Once the shell is gone, the ports come back to everyone within a couple of seconds.
        await new Promise((resolve) => shell.once('exit', resolve));
        let again: Claimed | undefined;
        for (let attempt = 0; attempt < 40 && again?.ports?.[0] !== base; attempt++) {
          await new Promise((resolve) => setTimeout(resolve, 100));
          again = await firstJsonLine<Claimed>(
            track(spawnFixtureAs(b, 'user-claimer.mjs', [String(base), '2', '0', '0'], userEnv(tmp.dir))),
          );
        }
        expect(again?.ports).toEqual([base, base + 1]);
      } finally {
        shell.kill('SIGKILL');
      }
    });
  },
);

describe.skipIf(process.platform !== 'linux' || process.getuid?.() !== 0)(
  `a container on the host's network, with a /tmp of its own${process.platform === 'linux' && process.getuid?.() === 0 ? '' : ' (skipped: needs root on Linux for unshare --mount)'}`,
  () => {
    let tmp: { dir: string; cleanup: () => void };
    beforeAll(() => {
      tmp = sharedTmp();
      nobodyReadableCopy();
    });
    afterAll(async () => {
      await stopAll();
      tmp.cleanup();
      removeNobodyReadableCopy();
    });

    it(`${PER_SIDE} claimers in a private mount namespace race ${PER_SIDE} on the host from one base, ${ROUNDS} rounds: no port twice`, async () => {
      const report: string[] = [];
      const fixture = `${nobodyReadableCopy().fixturesDir}/user-claimer.mjs`;
      for (let round = 1; round <= ROUNDS; round++) {
        const base = await freeRunBase(2 * PER_SIDE * COUNT + 20);
        const startAt = Date.now() + 2500;
        const args = [String(base), String(COUNT), String(startAt), '3000'];
        // Inside: the same TMPDIR path, but a fresh tmpfs there, so the same default state
        // directory name is another directory: the host's state file is out of sight.
        const inside = Array.from({ length: PER_SIDE }, () =>
          track(
            spawn(
              'unshare',
              [
                '--mount',
                '--propagation',
                'private',
                'sh',
                '-c',
                'mount -t tmpfs -o mode=1777 portlease-test "$TMPDIR" && exec "$@"',
                'sh',
                process.execPath,
                fixture,
                ...args,
              ],
              { env: userEnv(tmp.dir), stdio: ['ignore', 'pipe', 'pipe'] },
            ),
          ),
        );
        const outside = Array.from({ length: PER_SIDE }, () =>
          track(spawnFixtureAs(undefined, 'user-claimer.mjs', args, userEnv(tmp.dir))),
        );
        try {
          const claims = await Promise.all([...inside, ...outside].map((child) => firstJsonLine<Claimed>(child)));
          const result = verdict(claims);
          report.push(
            `round ${round}: ${result.claimers} claimers, ${result.ports} ports, ${result.duplicates.length} duplicates, ${result.unbound} unbound`,
          );
          expect(result.errors).toEqual([]);
          expect(result.duplicates).toEqual([]);
          expect(result.unbound).toBe(0);
        } finally {
          killAll([...inside, ...outside]);
        }
      }
      console.log(`private mount namespace vs host: ${report.join('; ')}`);
    });
  },
);
