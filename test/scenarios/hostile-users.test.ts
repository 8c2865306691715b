// No trust between users: whatever another user plants or holds, a victim's claims still
// work, never reach outside the victim's own files and sockets, and never wait on the other
// user. The worst the other user can do is hold ports, which binding them would do anyway.
import { spawn, spawnSync } from 'node:child_process';
import { chownSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenName } from '../../src/ports/port-tokens.js';
import { nobodyReadableCopy, removeNobodyReadableCopy } from '../helpers/nobody.js';
import { exited, killAll, processState } from '../helpers/processes.js';
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

/** Every file under `dir` with its bytes (directories as such), for "untouched" assertions. */
function snapshot(dir: string): Record<string, string> {
  const files: Record<string, string> = {};
  const walk = (path: string, name: string): void => {
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      const full = join(path, entry.name);
      const key = `${name}/${entry.name}`;
      if (entry.isDirectory()) {
        files[key] = '<dir>';
        walk(full, key);
      } else files[key] = entry.isFile() ? readFileSync(full, 'latin1') : `<${entry.isSocket() ? 'socket' : 'other'}>`;
    }
  };
  walk(dir, '');
  return files;
}

const unavailable = twoUsersUnavailable();

describe.skipIf(unavailable !== undefined)(`a hostile user${unavailable === undefined ? '' : ` (${unavailable})`}`, () => {
  let victim: TestUser;
  let hostile: TestUser;
  let tmp: { dir: string; cleanup: () => void };
  const children: ReturnType<typeof spawn>[] = [];
  beforeAll(() => {
    [victim, hostile] = testUsers();
    tmp = sharedTmp();
    nobodyReadableCopy();
  });
  afterAll(async () => {
    // Killed and waited for: one still releasing would write into a directory being removed.
    killAll(children);
    await Promise.all(children.map((child) => exited(child)));
    tmp.cleanup();
    removeNobodyReadableCopy();
  });

  function claimAs(
    user: TestUser,
    base: number,
    count: number,
    extra: { max?: number; startAt?: number; holdMs?: number } = {},
  ): Promise<Claimed> {
    const args = [String(base), String(count), String(extra.startAt ?? 0), String(extra.holdMs ?? 0)];
    if (extra.max !== undefined) args.push(String(extra.max));
    const child = spawnFixtureAs(user, 'user-claimer.mjs', args, userEnv(tmp.dir));
    children.push(child);
    return firstJsonLine<Claimed>(child);
  }

  it('holding tokens (stopped, with a description and garbage names): the ports are passed over, and an exhausted search names the holder', async () => {
    const base = await freeRunBase(40);
    const squatter = spawnFixtureAs(hostile, 'token-squatter.mjs', [String(base), String(base + 4), 'squat', 'stop'], userEnv(tmp.dir));
    children.push(squatter);
    const { pid, held } = await firstJsonLine<{ pid: number; held: number }>(squatter);
    expect(held).toBeGreaterThanOrEqual(6);
    for (let i = 0; i < 100 && processState(pid) !== 'T'; i++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(processState(pid)).toBe('T');
    // The squatter is stopped and holds base..base+4: the victim neither waits nor takes them.
    const claimed = await claimAs(victim, base, 2);
    expect(claimed.error).toBeUndefined();
    expect(claimed.ports![0]).toBeGreaterThan(base + 4);
    expect(claimed.bound).toBe(true);
    const refused = await claimAs(victim, base, 2, { max: base + 4 });
    expect(refused.code).toBe('PORTLEASE_EXHAUSTED');
    expect(refused.error).toContain(`5 ports are claimed by other users or containers (user ${hostile.name} (uid ${hostile.uid}))`);
    // The victim's list shows them as the other user's; the garbage names are passed over.
    const cli = nobodyReadableCopy().distEntry.replace(/index\.js$/, 'cli.cjs');
    const list = spawnSync(process.execPath, [cli, 'list', '--json'], {
      env: userEnv(tmp.dir),
      uid: victim.uid,
      gid: victim.gid,
      encoding: 'utf8',
    });
    expect(list.status).toBe(0);
    const { elsewhere } = JSON.parse(list.stdout) as { elsewhere: Array<{ ports: number[]; uid: number; label: string }> };
    expect(elsewhere).toContainEqual(
      expect.objectContaining({ ports: [base, base + 1, base + 2, base + 3, base + 4], uid: hostile.uid, label: 'squat' }),
    );
    expect(elsewhere.flatMap((claim) => claim.ports).filter((port) => port > 65535 || port < 1)).toEqual([]);
    squatter.kill('SIGKILL');
  });

  it.each([
    ['a directory of its own', (path: string) => mkdirSync(path, { mode: 0o700 })],
    ['a symlink to its own state directory', (path: string, own: string) => symlinkSync(own, path)],
    ['a file', (path: string) => writeFileSync(path, 'mine')],
  ])(
    'squatting the default directory with %s: the victim claims anyway, races it without a duplicate, and never touches its files',
    async (_, plant) => {
      const squatted = join(tmp.dir, `portlease-${victim.uid}`);
      const own = join(tmp.dir, `portlease-${hostile.uid}`);
      // The hostile user's own state, with a claim in it, then the squat.
      const first = await claimAs(hostile, await freeRunBase(4), 1, { holdMs: 0 });
      expect(first.error).toBeUndefined();
      spawnSync('rm', ['-rf', squatted]);
      plant(squatted, own);
      spawnSync('chown', ['-h', `${hostile.uid}:${hostile.gid}`, squatted]);
      const base = await freeRunBase(40);
      const startAt = Date.now() + 2000;
      const claims = await Promise.all(
        [victim, victim, victim, hostile, hostile, hostile].map((user) => claimAs(user, base, 2, { startAt, holdMs: 2000 })),
      );
      expect(claims.map((claim) => claim.error)).toEqual([undefined, undefined, undefined, undefined, undefined, undefined]);
      const ports = claims.flatMap((claim) => claim.ports!);
      expect(new Set(ports).size).toBe(ports.length);
      expect(claims.every((claim) => claim.bound)).toBe(true);
      // No claim of the victim went into the squatter's files (through a planted link or otherwise)...
      const afterRace = snapshot(own);
      const victimPids = claims.filter((claim) => claim.uid === victim.uid).map((claim) => claim.pid!);
      const written = Object.values(afterRace).join('\n');
      expect(victimPids.filter((pid) => written.includes(`"pid":${pid},`))).toEqual([]);
      // ...and a claim of the victim alone leaves them exactly as they were.
      await claimAs(victim, base, 1);
      expect(snapshot(own)).toEqual(afterRace);
      spawnSync('rm', ['-rf', squatted]);
    },
  );

  it('connecting to the victim\u2019s tokens (a flood of 2,000) changes nothing: the claim stays held', async () => {
    const base = await freeRunBase(10);
    const holder = spawnFixtureAs(victim, 'user-claimer.mjs', [String(base), '1', '0', '15000'], userEnv(tmp.dir));
    children.push(holder);
    const claimed = await firstJsonLine<Claimed>(holder);
    const name = tokenName(claimed.ports![0]!);
    let connected = 0;
    await Promise.all(
      Array.from(
        { length: 2000 },
        () =>
          new Promise<void>((resolve) => {
            const socket = connect({ path: name });
            socket.on('connect', () => connected++);
            socket.on('error', () => resolve());
            socket.on('close', () => resolve());
            socket.setTimeout(2000, () => socket.destroy());
          }),
      ),
    );
    expect(connected).toBeGreaterThan(0);
    expect(holder.exitCode).toBeNull();
    // Still held: nobody else gets the port.
    const other = await claimAs(hostile, claimed.ports![0]!, 1);
    expect(other.ports![0]).not.toBe(claimed.ports![0]);
    holder.kill('SIGKILL');
  });

  it.skipIf(spawnSync('strace', ['-V'], { stdio: 'ignore' }).status !== 0)(
    'under strace, with everything planted: a claim connects, writes, removes, renames and signals only what is its own',
    async () => {
      const base = await freeRunBase(20);
      const squatter = spawnFixtureAs(hostile, 'token-squatter.mjs', [String(base), String(base + 1), 'planted'], userEnv(tmp.dir));
      children.push(squatter);
      await firstJsonLine(squatter);
      spawnSync('rm', ['-rf', join(tmp.dir, `portlease-${victim.uid}`)]);
      symlinkSync(join(tmp.dir, `portlease-${hostile.uid}`), join(tmp.dir, `portlease-${victim.uid}`));
      spawnSync('chown', ['-h', `${hostile.uid}:${hostile.gid}`, join(tmp.dir, `portlease-${victim.uid}`)]);
      const fixture = join(nobodyReadableCopy().fixturesDir, 'user-claimer.mjs');
      const traceFile = join(tmp.dir, 'trace');
      const traced = spawnSync(
        'strace',
        [
          '-f',
          '-qq',
          '-s',
          '200',
          '-o',
          traceFile,
          '-e',
          'trace=connect,kill,tgkill,unlink,unlinkat,rename,renameat,renameat2,mkdir,mkdirat,rmdir,openat,symlink,link,linkat,chmod,fchmodat',
          process.execPath,
          fixture,
          String(base),
          '2',
          '0',
          '0',
        ],
        { env: { ...userEnv(tmp.dir), XDG_RUNTIME_DIR: '' }, uid: victim.uid, gid: victim.gid, encoding: 'utf8', timeout: 30_000 },
      );
      const claimed = JSON.parse(traced.stdout) as Claimed;
      expect(claimed.error).toBeUndefined();
      expect(claimed.ports![0]).toBeGreaterThan(base + 1);
      const trace = readFileSync(traceFile, 'utf8').split('\n');
      const hostileDir = join(tmp.dir, `portlease-${hostile.uid}`);
      const squatted = join(tmp.dir, `portlease-${victim.uid}`);
      const namesForeign = (line: string): boolean =>
        line.includes(`"${hostileDir}`) || line.includes(`"${squatted}"`) || line.includes(`"${squatted}/`);
      const offending = trace.filter((line) => {
        // A claim for itself connects to nothing: no socket of anyone else is ever reached.
        if (/^\d+ +connect\(/.test(line)) return line.includes('AF_UNIX') || line.includes('AF_LOCAL');
        // Liveness checks use signal 0; nothing is ever signalled.
        if (/^\d+ +(kill|tgkill)\(/.test(line))
          return !/, 0\)/.test(line) && !line.includes('SIGSTOP') && !line.includes(`(${claimed.pid}, `);
        const writes =
          /^\d+ +(unlink|unlinkat|rename|renameat2?|mkdir|mkdirat|rmdir|symlink|link|linkat|chmod|fchmodat)\(/.test(line) ||
          /openat\(.*O_(WRONLY|RDWR|CREAT)/.test(line);
        // Reads never go through the planted link either.
        return (writes || /openat\(/.test(line)) && namesForeign(line);
      });
      // The trace did follow the claim: it wrote its state in a directory of its own instead.
      expect(trace.some((line) => /openat\(.*portlease-\d+-\w+\/claims-.*O_CREAT/.test(line))).toBe(true);
      expect(offending).toEqual([]);
      squatter.kill('SIGKILL');
      spawnSync('rm', ['-f', join(tmp.dir, `portlease-${victim.uid}`)]);
    },
  );

  it('stopping its own claimers inside their lock (SIGSTOP) holds up no claim of the victim', async () => {
    const base = await freeRunBase(30);
    const stateDir = join(tmp.dir, 'hostile-own');
    mkdirSync(stateDir, { mode: 0o700 });
    chownSync(stateDir, hostile.uid, hostile.gid);
    const stopped = Array.from({ length: 3 }, () => {
      const child = spawn(
        process.execPath,
        [join(nobodyReadableCopy().fixturesDir, 'queued-claimer.mjs'), stateDir, String(base), '1', '2000', '60000'],
        {
          env: { ...userEnv(tmp.dir), PORTLEASE_TEST_PAUSE_AT: 'read-back' },
          uid: hostile.uid,
          gid: hostile.gid,
          stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
        },
      );
      children.push(child);
      return child;
    });
    for (let i = 0; i < 300 && !stopped.some((child) => processState(child.pid!) === 'T'); i++)
      await new Promise((resolve) => setTimeout(resolve, 20));
    expect(stopped.some((child) => processState(child.pid!) === 'T')).toBe(true);
    const startAt = Date.now() + 1000;
    const claims = await Promise.all(Array.from({ length: 6 }, () => claimAs(victim, base, 1, { startAt, holdMs: 500 })));
    expect(claims.map((claim) => claim.error)).toEqual(Array.from({ length: 6 }, () => undefined));
    const ports = claims.flatMap((claim) => claim.ports!);
    expect(new Set(ports).size).toBe(6);
    killAll(stopped);
  });
});
