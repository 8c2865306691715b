import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeStateDir } from '../helpers/state-dir.js';

const fixture = join(import.meta.dirname, '..', 'fixtures', 'threads-release.mjs');
const distEntry = join(import.meta.dirname, '..', '..', 'dist', 'index.js');

describe('a bare release()', () => {
  const state = makeStateDir();
  afterEach(() => state.cleanup());

  it('gives back only what its own thread, module copy or allocator claimed', () => {
    const result = spawnSync(process.execPath, [fixture], {
      env: { ...process.env, PORTLEASE_DIST: distEntry, PORTLEASE_STATE_DIR: state.dir },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(result.stderr).toBe('');
    const { main, worker, beforeMain, released, afterMain, afterAll } = JSON.parse(result.stdout);
    // In the worker thread: the module-level release() took the module's two claims, the
    // instance's release() the instance's claim, and nothing of the main thread's.
    expect(worker.module).toEqual(worker.claimed);
    expect(worker.instance).toEqual(worker.e);
    expect(beforeMain).toEqual([...main.module, ...main.instance, ...main.otherFile, ...worker.kept].sort((a, b) => a - b));
    // In the main thread: each release() took its own claim, not the worker's, nor the other file's.
    expect(released.mainModule).toEqual(main.module);
    expect(released.mainInstance).toEqual(main.instance);
    expect(afterMain).toEqual([...main.otherFile, ...worker.kept].sort((a, b) => a - b));
    // The other file's own bare release() took its claim; the worker's went when it exited.
    expect(released.otherFile).toEqual(main.otherFile);
    expect(afterAll).toEqual([]);
  });
});
