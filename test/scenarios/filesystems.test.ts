import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PortAllocator } from '../../src/index.js';
import { closeOwnBeacons } from '../../src/liveness/owner-beacon.js';
import { exited, forkFixture, killAll } from '../helpers/processes.js';
import { freeRunBase } from '../helpers/sockets.js';
import { storedClaims } from '../helpers/state-dir.js';

// Filesystems differ in what stat reports. On ext4 with 128-byte inodes (old images, some
// appliances), like on many NFS, FUSE and 9p mounts, there is no birth time, and times
// have whole seconds: nothing but the file's own header may tell one generation of the
// state file from the next. Loop-mounting needs root; elsewhere this is skipped, and says so.
const canLoopMount = (() => {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  const probe = mkdtempSync(join(tmpdir(), 'portlease-loop-'));
  try {
    writeFileSync(join(probe, 'img'), '');
    if (spawnSync('truncate', ['-s', '8M', join(probe, 'img')]).status !== 0) return false;
    if (spawnSync('mkfs.ext4', ['-q', '-I', '128', '-F', join(probe, 'img')]).status !== 0) return false;
    mkdirSync(join(probe, 'mnt'));
    if (spawnSync('mount', ['-o', 'loop', join(probe, 'img'), join(probe, 'mnt')]).status !== 0) return false;
    spawnSync('umount', [join(probe, 'mnt')]);
    return true;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
})();
const reason = canLoopMount ? '' : ' (skipped: loop-mounting an ext4 image needs root and mkfs.ext4)';

describe.skipIf(!canLoopMount)(`a state directory on a filesystem without birth times${reason}`, () => {
  let root: string;
  let mountPoint: string;
  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'portlease-nobtime-'));
    mountPoint = join(root, 'mnt');
    execFileSync('truncate', ['-s', '16M', join(root, 'img')]);
    execFileSync('mkfs.ext4', ['-q', '-I', '128', '-F', join(root, 'img')], { stdio: 'ignore' });
    mkdirSync(mountPoint);
    execFileSync('mount', ['-o', 'loop', join(root, 'img'), mountPoint]);
  });
  afterAll(() => {
    closeOwnBeacons(); // this process's beacon socket lives there too
    execFileSync('umount', [mountPoint]);
    rmSync(root, { recursive: true, force: true });
  });

  it('is what this test means: birthtimeMs is 0 there', () => {
    const probe = join(mountPoint, 'probe');
    writeFileSync(probe, '');
    expect(statSync(probe).birthtimeMs).toBe(0);
  });

  it('claims, releases and compacts with a second process claiming meanwhile: no void write, no port twice', async () => {
    const stateDir = join(mountPoint, 'state');
    const base = await freeRunBase(40);
    const other = forkFixture('claim-forever.mjs', [stateDir, String(base), '30']);
    const theirs: number[] = [];
    let finished = false;
    other.on('message', (message: { port?: number; error?: string; finished?: boolean }) => {
      if (message.port !== undefined) theirs.push(message.port);
      if (message.error !== undefined) theirs.push(-1);
      if (message.finished === true) finished = true;
    });
    try {
      const allocator = new PortAllocator({ stateDir });
      const kept = [];
      // Enough claims and releases to compact the log several times (32 KiB each).
      for (let i = 0; i < 300; i++) {
        const lease = await allocator.claim({ base });
        if (i % 30 === 0) kept.push(lease);
        else await lease.release();
      }
      const deadline = Date.now() + 20_000;
      while (!finished && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
      expect(theirs).not.toContain(-1);
      expect(theirs).toHaveLength(30);
      const ours = kept.map((lease) => lease.port);
      expect(theirs.filter((port) => ours.includes(port))).toEqual([]);
      const stored = storedClaims(allocator.stateFile)
        .map((claim) => claim.start)
        .sort((a, b) => a - b);
      expect(stored).toEqual([...ours, ...theirs].sort((a, b) => a - b));
      other.send('exit');
      await exited(other);
    } finally {
      killAll([other]);
    }
  });
});
