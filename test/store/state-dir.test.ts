import { chmodSync, chownSync, lstatSync, mkdirSync, readdirSync, renameSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect } from 'vitest';
import { isPortleaseError, PortAllocator, UnsafeStateDirError } from '../../src/index.js';
import { prepareStateDir, statePaths } from '../../src/store/state-dir.js';
import { canRunAsNobody, NOBODY_SKIP_REASON, nobodyReadableCopy, removeNobodyReadableCopy } from '../helpers/nobody.js';
import { freeRunBase } from '../helpers/sockets.js';
import { stateTest } from '../helpers/state-dir.js';

const it = stateTest;

const posix = process.platform !== 'win32';
const isRoot = process.getuid?.() === 0;

describe('the state directory', () => {
  it.skipIf(!posix)('is created with mode 0700, parents included', ({ stateDir: root }) => {
    const dir = join(root, 'a', 'b');
    prepareStateDir(dir);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(statSync(join(root, 'a')).mode & 0o777).toBe(0o700);
  });

  it('keeps one state file per host', ({ stateDir: root }) => {
    expect(statePaths(root, 'ci-runner-1').stateFile).toBe(join(root, 'claims-ci-runner-1.jsonl'));
    expect(statePaths(root, 'we/ird host').stateFile).toBe(join(root, 'claims-we_ird_host.jsonl'));
  });

  it.skipIf(!posix)(
    'is checked again by a running process once it was made world-writable or swapped for a symlink',
    async ({ stateDir: root }) => {
      const dir = join(root, 'state');
      const allocator = new PortAllocator({ stateDir: dir });
      const base = await freeRunBase(2);
      const lease = await allocator.claim({ base });
      // Made writable by others under a running process: refused, as a new process would.
      chmodSync(dir, 0o777);
      expect(await allocator.claim({ base }).catch((caught: unknown) => caught)).toBeInstanceOf(UnsafeStateDirError);
      chmodSync(dir, 0o700);
      expect((await allocator.claim({ base })).port).toBe(base + 1);
      // Swapped for a symlink to another directory.
      renameSync(dir, join(root, 'moved'));
      mkdirSync(join(root, 'elsewhere'), { mode: 0o700 });
      symlinkSync(join(root, 'elsewhere'), dir);
      expect(await allocator.claim({ base }).catch((caught: unknown) => caught)).toBeInstanceOf(UnsafeStateDirError);
      expect(lease.port).toBe(base);
    },
  );

  it('refuses a symlink', async ({ stateDir: root }) => {
    const real = join(root, 'real');
    mkdirSync(real, { mode: 0o700 });
    const link = join(root, 'link');
    symlinkSync(real, link);
    const error = await new PortAllocator({ stateDir: link }).claim().catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(UnsafeStateDirError);
    expect(isPortleaseError(error, 'PORTLEASE_UNSAFE_STATE_DIR')).toBe(true);
    expect((error as Error).message).toContain('symbolic link');
  });

  it.skipIf(!posix)('refuses a directory writable by group or others, even group-shared with the setgid bit', ({ stateDir: root }) => {
    const dir = join(root, 'open');
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    expect(() => prepareStateDir(dir)).toThrow(/writable by group or others \(mode 0777\)/);
    chmodSync(dir, 0o2770);
    expect(() => prepareStateDir(dir)).toThrow(/writable by group or others \(mode 02770\)/);
  });

  it.skipIf(!posix || !isRoot)('refuses a directory owned by another user', ({ stateDir: root }) => {
    const dir = join(root, 'theirs');
    mkdirSync(dir, { mode: 0o700 });
    chownSync(dir, 12345, 12345);
    expect(() => prepareStateDir(dir)).toThrow(/owned by uid 12345/);
  });

  it('refuses a path that is a file as unsafe, saying what to do', ({ stateDir: root }) => {
    const file = join(root, 'file');
    writeFileSync(file, '');
    expect(() => prepareStateDir(file)).toThrow(
      expect.objectContaining({ code: 'PORTLEASE_UNSAFE_STATE_DIR', message: expect.stringMatching(/not a directory.*\. \S/) }),
    );
  });

  it.skipIf(!posix)('keeps every file and directory it makes private, whatever the umask', async ({ stateDir: root }) => {
    const dir = join(root, 'private');
    const umask = process.umask(0);
    try {
      const allocator = new PortAllocator({ stateDir: dir });
      await allocator.claim({ base: 40_000 + Math.floor(Math.random() * 1000), sticky: true, label: 'umask' });
      await allocator.release();
      const modes = Object.fromEntries(readdirSync(dir).map((name) => [name, lstatSync(join(dir, name)).mode & 0o777]));
      expect(lstatSync(dir).mode & 0o777).toBe(0o700);
      expect(Object.keys(modes).length).toBeGreaterThanOrEqual(3); // the state file, the sticky memory, the beacon...
      for (const [name, mode] of Object.entries(modes)) {
        expect({ name, mode }).toEqual({ name, mode: lstatSync(join(dir, name)).isDirectory() ? 0o700 : 0o600 });
      }
    } finally {
      process.umask(umask);
    }
  });
});

// Root can act as two users for real: itself and nobody, both with a HOME that service accounts have.
describe.skipIf(!canRunAsNobody())(`the default directory${canRunAsNobody() ? '' : ` (${NOBODY_SKIP_REASON})`}`, () => {
  afterAll(removeNobodyReadableCopy);

  /** Runs `claim` from nobody's readable copy of the build, as `user`, with the default directory under `tmp`. */
  function claimAs(user: 'root' | 'nobody', tmp: string, env: Record<string, string> = {}): SpawnSyncReturns<string> {
    const cli = join(dirname(nobodyReadableCopy().distEntry), 'cli.cjs');
    const inherited = { ...process.env };
    delete inherited.PORTLEASE_STATE_DIR;
    return spawnSync(process.execPath, [cli, 'claim', '--base', '20000', '--ttl', '5s'], {
      encoding: 'utf8',
      env: { ...inherited, HOME: user === 'root' ? '/' : '/nonexistent', TMPDIR: tmp, ...env },
      timeout: 20_000,
      ...(user === 'nobody' ? { uid: 65534, gid: 65534 } : {}),
    });
  }

  it('is private to each uid, even when users share a HOME of / or /nonexistent', ({ stateDir: root }) => {
    // A temporary directory like /tmp: everyone may create entries, nobody may remove others'.
    chmodSync(root, 0o1777);
    const asRoot = claimAs('root', root);
    const asNobody = claimAs('nobody', root);
    expect(asRoot.stderr).toBe('');
    expect(asNobody.stderr).toBe('');
    expect(asRoot.stdout).toMatch(/^\d+\n$/);
    expect(asNobody.stdout).toMatch(/^\d+\n$/);
    for (const [uid, name] of [
      [0, 'portlease-0'],
      [65534, 'portlease-65534'],
    ] as const) {
      const stats = statSync(join(root, name));
      expect({ uid: stats.uid, mode: stats.mode & 0o777 }).toEqual({ uid, mode: 0o700 });
    }
  });

  it('taken by another user, falls back to a directory of the user’s own with a warning, and PORTLEASE_STATE_DIR still decides', ({
    stateDir: root,
  }) => {
    chmodSync(root, 0o1777);
    // nobody creates root's directory first, and a symlink for a second try.
    mkdirSync(join(root, 'portlease-0'), { mode: 0o700 });
    chownSync(join(root, 'portlease-0'), 65534, 65534);
    const runtime = join(root, 'run-0');
    mkdirSync(runtime, { mode: 0o700 });
    const fellBack = claimAs('root', root, { XDG_RUNTIME_DIR: runtime });
    expect(fellBack.status).toBe(0);
    expect(fellBack.stdout).toMatch(/^\d+\n$/);
    expect(fellBack.stderr).toContain('PORTLEASE_STATE_DIR_TAKEN');
    expect(fellBack.stderr).toContain(`${join(root, 'portlease-0')} is owned by uid 65534`);
    expect(fellBack.stderr).toContain(`using ${join(runtime, 'portlease')} instead`);
    expect(statSync(join(runtime, 'portlease')).mode & 0o777).toBe(0o700);
    // Without a runtime directory or a home of its own: a directory of that process only.
    const alone = claimAs('root', root, { XDG_RUNTIME_DIR: '' });
    expect(alone.status).toBe(0);
    expect(alone.stderr).toMatch(new RegExp(`using ${join(root, 'portlease-0-')}\\w+ instead`));
    const chosen = claimAs('root', root, { PORTLEASE_STATE_DIR: join(root, 'mine') });
    expect(chosen.stderr).toBe('');
    expect(chosen.stdout).toMatch(/^\d+\n$/);
  });
});
