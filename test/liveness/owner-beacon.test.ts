import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, lstatSync, mkdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { afterAll, afterEach, describe, expect } from 'vitest';
import { currentPidNamespace } from '../../src/base/proc.js';
import { isOwnerAlive } from '../../src/liveness/liveness.js';
import { probeBeacons, sweepDeadBeacons } from '../../src/liveness/beacon-probe.js';
import { closeOwnBeacons, ensureOwnBeacon, isBeaconName } from '../../src/liveness/owner-beacon.js';
import { canRunAsNobody, NOBODY_SKIP_REASON, nobodyReadableCopy, removeNobodyReadableCopy } from '../helpers/nobody.js';
import { distEntry, exited, fixturesDir, killAll } from '../helpers/processes.js';
import { stateTest } from '../helpers/state-dir.js';

const it = stateTest;

// The copy of the build that nobody reads (made when the tests below check whether they can run).
afterAll(removeNobodyReadableCopy);

const linux = process.platform === 'linux';
const supported = linux || process.platform === 'darwin';
const isRoot = process.getuid?.() === 0;

// One probe, run once: unshare needs CAP_SYS_ADMIN (root, or a user namespace the kernel allows).
const canUnshare =
  linux && spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true'], { stdio: 'ignore', timeout: 10_000 }).status === 0;

interface BeaconReport {
  name: string | undefined;
  pid: number;
  pidNamespace: string | undefined;
  firstCallUs: number;
}

/** The first stdout line of `child`, parsed as JSON; rejects after `timeoutMs` or on exit. */
function firstLine<T>(child: ChildProcess, timeoutMs = 20_000): Promise<T> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => done(new Error(`no line from child within ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString();
      const end = buffered.indexOf('\n');
      if (end !== -1) done(undefined, buffered.slice(0, end));
    };
    const onExit = (code: number | null, signal: string | null) =>
      done(new Error(`child exited (${code ?? signal}) before printing a line`));
    function done(error: Error | undefined, line?: string): void {
      clearTimeout(timer);
      child.stdout!.off('data', onData);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(JSON.parse(line!) as T);
    }
    child.stdout!.on('data', onData);
    child.on('exit', onExit);
  });
}

const env = { ...process.env, PORTLEASE_DIST: distEntry };

function holdBeacon(dir: string, mode: 'hold' | 'leave' = 'hold'): ChildProcess {
  return spawn(process.execPath, [join(fixturesDir, 'hold-beacon.mjs'), dir, mode], { env, stdio: ['ignore', 'pipe', 'inherit'] });
}

/** Probes one beacon until it reports `wanted` (or `timeoutMs` passes); returns the last state. */
async function probeUntil(dir: string, name: string, wanted: string, timeoutMs = 5000): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = (await probeBeacons(dir, [name])).get(name);
    if (state === wanted || Date.now() > deadline) return state;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe.skipIf(!supported)('owner beacon', () => {
  const children: ChildProcess[] = [];
  afterEach(() => {
    killAll(children.splice(0));
    closeOwnBeacons();
  });

  it('exists as a socket as soon as ensureOwnBeacon returns, with one name per directory', async ({ stateDir: dir }) => {
    const name = ensureOwnBeacon(dir)!;
    // Before any turn of the event loop: the bind happened inside the call.
    const stats = lstatSync(join(dir, name));
    expect(stats.isSocket()).toBe(true);
    expect(stats.mode & 0o777).toBe(0o600);
    expect(isBeaconName(name)).toBe(true);
    expect(ensureOwnBeacon(dir)).toBe(name);
    expect((await probeBeacons(dir, [name])).get(name)).toBe('alive');

    closeOwnBeacons();
    expect(existsSync(join(dir, name))).toBe(false);
    const next = ensureOwnBeacon(dir)!;
    expect(next).not.toBe(name);
    expect(lstatSync(join(dir, next)).mode & 0o777).toBe(0o600);
  });

  it('binds the same name again when its socket was removed under it (a temp cleaner, the directory re-created)', async ({
    stateDir: dir,
  }) => {
    const name = ensureOwnBeacon(dir)!;
    // Claims already name it: a missing socket would read as a dead owner.
    unlinkSync(join(dir, name));
    expect((await probeBeacons(dir, [name])).get(name)).toBe('dead');
    expect(ensureOwnBeacon(dir)).toBe(name);
    expect((await probeBeacons(dir, [name])).get(name)).toBe('alive');
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    expect(ensureOwnBeacon(dir)).toBe(name);
    expect((await probeBeacons(dir, [name])).get(name)).toBe('alive');
  });

  it('refuses a path longer than sun_path rather than binding a truncated one', ({ stateDir: dir }) => {
    const longDir = join(dir, 'd'.repeat(100));
    expect(ensureOwnBeacon(longDir)).toBeUndefined();
    expect(ensureOwnBeacon(join(dir, 'missing'))).toBeUndefined();
  });

  it("tells a live owner from a killed one, and removes the killed owner's socket", async ({ stateDir: dir }) => {
    const child = holdBeacon(dir);
    children.push(child);
    const { name } = await firstLine<BeaconReport>(child);
    expect((await probeBeacons(dir, [name!])).get(name!)).toBe('alive');

    child.kill('SIGKILL');
    await exited(child);
    // The socket file outlives the process; the probe finds it refused and removes it.
    expect(existsSync(join(dir, name!))).toBe(true);
    expect((await probeBeacons(dir, [name!])).get(name!)).toBe('dead');
    expect(existsSync(join(dir, name!))).toBe(false);
    expect((await probeBeacons(dir, [name!])).get(name!)).toBe('dead');
  });

  it.skipIf(!linux)('counts a stopped owner alive: the kernel queues the connection', async ({ stateDir: dir }) => {
    const child = holdBeacon(dir);
    children.push(child);
    const { name } = await firstLine<BeaconReport>(child);
    child.kill('SIGSTOP');
    try {
      // Several rounds: connections pile up unaccepted in the stopped owner's queue.
      for (let round = 0; round < 5; round++) expect((await probeBeacons(dir, [name!])).get(name!)).toBe('alive');
    } finally {
      child.kill('SIGCONT');
    }
  });

  it('is removed at a normal exit and does not keep its process alive', async ({ stateDir: dir }) => {
    const child = holdBeacon(dir, 'leave');
    children.push(child);
    const started = Date.now();
    const { name } = await firstLine<BeaconReport>(child);
    expect(name).toBeDefined();
    // exited() kills the child after the bound; an exit by itself is code 0, no signal.
    expect(await exited(child, 10_000)).toMatchObject({ code: 0, signal: null });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(existsSync(join(dir, name!))).toBe(false);
  });

  it('gives each worker thread its own beacon, removed when the worker ends', async ({ stateDir: dir }) => {
    const own = ensureOwnBeacon(dir)!;
    const code = `import(process.env.BEACON_MODULE).then(({ ensureOwnBeacon }) => require('node:worker_threads').parentPort.postMessage(ensureOwnBeacon(process.env.BEACON_DIR)));`;
    const worker = new Worker(code, {
      eval: true,
      env: { BEACON_MODULE: join(distEntry, '../liveness/owner-beacon.js'), BEACON_DIR: dir },
    });
    const ended = new Promise((resolve) => worker.once('exit', resolve));
    try {
      const name = await new Promise<string>((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
      });
      expect(name).not.toBe(own);
      await ended;
      expect(existsSync(join(dir, name))).toBe(false);
      expect(existsSync(join(dir, own))).toBe(true);
    } finally {
      await worker.terminate();
    }
  });

  it('reports unknown for names that are not beacons, and touches nothing', async ({ stateDir: dir }) => {
    const live = ensureOwnBeacon(dir)!;
    writeFileSync(join(dir, 'owner-planted.sock'), '');
    symlinkSync(join(dir, live), join(dir, 'owner-link.sock'));
    const names = [
      '../owner-x.sock',
      `sub/${live}`,
      join(dir, live),
      'claims-host.jsonl',
      'owner-.sock',
      'owner-planted.sock',
      'owner-link.sock',
    ];
    const states = await probeBeacons(dir, names);
    expect(Object.fromEntries(states)).toEqual(Object.fromEntries(names.map((name) => [name, 'unknown'])));
    expect(existsSync(join(dir, 'owner-planted.sock'))).toBe(true);
    expect(lstatSync(join(dir, 'owner-link.sock')).isSymbolicLink()).toBe(true);

    // Without the directory, a missing socket proves nothing.
    expect((await probeBeacons(join(dir, 'gone'), ['owner-abc.sock'])).get('owner-abc.sock')).toBe('unknown');
    await expect(probeBeacons(dir, [live], 0)).rejects.toThrow(RangeError);
  });

  it('sweeps the beacons of killed owners and keeps live ones', async ({ stateDir: dir }) => {
    const own = ensureOwnBeacon(dir)!;
    const live = holdBeacon(dir);
    const killed = holdBeacon(dir);
    children.push(live, killed);
    const [liveReport, killedReport] = await Promise.all([firstLine<BeaconReport>(live), firstLine<BeaconReport>(killed)]);
    killed.kill('SIGKILL');
    await exited(killed);
    expect(await sweepDeadBeacons(dir)).toBe(1);
    expect(existsSync(join(dir, killedReport.name!))).toBe(false);
    expect(existsSync(join(dir, liveReport.name!))).toBe(true);
    expect(existsSync(join(dir, own))).toBe(true);
  });

  describe.skipIf(!linux || !isRoot || !canRunAsNobody())(
    `permissions (as nobody${canRunAsNobody() ? '' : `; ${NOBODY_SKIP_REASON}`})`,
    () => {
      function probeAsNobody(dir: string, names: string[]): Promise<{ states: Record<string, string>; uid: number }> {
        const copy = nobodyReadableCopy();
        const child = spawn(process.execPath, [join(copy.fixturesDir, 'probe-beacon.mjs'), dir, ...names], {
          env: { ...env, PORTLEASE_DIST: copy.distEntry },
          stdio: ['ignore', 'pipe', 'inherit'],
          uid: 65534,
          gid: 65534,
        });
        children.push(child);
        return firstLine(child);
      }

      it('reports unknown, never dead, when the beacon refuses the caller (EACCES), even in a directory of its group', async ({
        stateDir: dir,
      }) => {
        // nobody may search the directory, so the lstat passes and the connect meets the socket's mode.
        chmodSync(dir, 0o711);
        const privateName = ensureOwnBeacon(dir)!;
        const result = await probeAsNobody(dir, [privateName]);
        expect(result.uid).toBe(65534);
        expect(result.states[privateName]).toBe('unknown');
        expect(existsSync(join(dir, privateName))).toBe(true);

        closeOwnBeacons();
        // A setgid directory of nobody's group: the socket gets that group, but stays 0600, so
        // another user can neither reach it nor read its live owner as dead.
        chownSync(dir, 0, 65534);
        chmodSync(dir, 0o2770);
        const groupName = ensureOwnBeacon(dir)!;
        expect(lstatSync(join(dir, groupName)).gid).toBe(65534);
        expect(lstatSync(join(dir, groupName)).mode & 0o777).toBe(0o600);
        expect((await probeAsNobody(dir, [groupName])).states[groupName]).toBe('unknown');
      });
    },
  );
});

describe.skipIf(!linux)('currentPidNamespace', () => {
  it('is the inode of /proc/self/ns/pid, read once', () => {
    expect(currentPidNamespace()).toMatch(/^\d+$/);
    expect(currentPidNamespace()).toBe(currentPidNamespace());
  });
});

describe.skipIf(!linux)('across PID namespaces', () => {
  // Never silent: the reason is in the test name when it is skipped.
  it.skipIf(!canUnshare)(
    'sees an owner in another PID namespace alive, then dead (needs `unshare --pid`: root or CAP_SYS_ADMIN)',
    async ({ stateDir: dir }) => {
      // --kill-child: killing unshare kills the owner inside, as a container runtime would.
      const child = spawn(
        'unshare',
        ['--pid', '--fork', '--kill-child', '--mount-proc', process.execPath, join(fixturesDir, 'hold-beacon.mjs'), dir, 'hold'],
        {
          env,
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      try {
        const inside = await firstLine<BeaconReport>(child);
        expect(inside.pidNamespace).toMatch(/^\d+$/);
        expect(inside.pidNamespace).not.toBe(currentPidNamespace());
        // The owner's PID means something else here (PID 1 is our own init): the bug a beacon fixes.
        expect(inside.pid).toBe(1);
        expect((await probeBeacons(dir, [inside.name!])).get(inside.name!)).toBe('alive');

        child.kill('SIGKILL');
        await exited(child);
        expect(await probeUntil(dir, inside.name!, 'dead')).toBe('dead');
        expect(existsSync(join(dir, inside.name!))).toBe(false);
        // PID 1 out here still runs, so the PID check alone would have kept the claim forever.
        expect(isOwnerAlive(inside.pid, undefined)).toBe(true);
      } finally {
        killAll([child]);
        await exited(child, 5000);
      }
    },
  );
});
