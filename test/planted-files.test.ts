import { execFileSync, spawnSync } from 'node:child_process';
import { symlinkSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PortAllocator, StateIoError } from '../src/index.js';
import { statePaths } from '../src/state-dir.js';
import { freeRunBase, makeStateDir } from './helpers.js';

// Anyone who can write a shared state directory could plant a FIFO or a device where
// portlease expects a file. Opening one for reading would block forever, deaf to signals.
const hasMkfifo = process.platform !== 'win32' && spawnSync('mkfifo', ['--version'], { stdio: 'ignore' }).status === 0;

describe.skipIf(!hasMkfifo)(`planted files${hasMkfifo ? '' : ' (skipped: no mkfifo)'}`, () => {
  let stateDir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir: stateDir, cleanup } = makeStateDir()));
  afterEach(() => cleanup());

  it('a FIFO as the state file is refused with PORTLEASE_STATE_IO at once, not waited on', async () => {
    execFileSync('mkfifo', [statePaths(stateDir).stateFile]);
    const error = await new PortAllocator({ stateDir }).claim({ base: await freeRunBase(1) }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StateIoError);
    expect((error as Error).message).toMatch(/not a regular file/);
  });

  it('a symlink to /dev/zero as the state file is refused the same way', async () => {
    symlinkSync('/dev/zero', statePaths(stateDir).stateFile);
    const error = await new PortAllocator({ stateDir }).claim({ base: await freeRunBase(1) }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StateIoError);
  });

  it('a FIFO as the socket table cache is ignored (the table is read from the kernel) and the claim succeeds', async () => {
    execFileSync('mkfifo', [statePaths(stateDir).socketCacheFile]);
    const base = await freeRunBase(1);
    const lease = await new PortAllocator({ stateDir }).claim({ base });
    expect(lease.port).toBe(base);
    await lease.release();
  });
});
