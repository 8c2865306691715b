import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { listClaims } from '../../src/index.js';
import { makeStateDir } from '../helpers/state-dir.js';

const fixture = join(import.meta.dirname, '..', 'fixtures', 'both-builds.cjs');

describe('the CommonJS and the ESM build loaded in one process', () => {
  const state = makeStateDir();
  afterEach(() => state.cleanup());

  it('share claim ids, the default allocator, the beacon and the exit release; threads stay apart', async () => {
    const result = spawnSync(process.execPath, [fixture], {
      env: { ...process.env, PORTLEASE_STATE_DIR: state.dir },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const seen = JSON.parse(result.stdout);
    expect(seen).toMatchObject({
      differentCopies: true,
      sameDefaultAllocator: true,
      // One id prefix: both copies count claim ids in one process state (the worker's are gone).
      idPrefixes: 1,
      // The worker thread's claims (made through both copies) went with it; the main thread's stayed.
      labelsAfterWorker: ['cjs', 'esm'],
      // One beacon for the process, not one per copy (the worker's shares the PID but is its own).
      beacons: 1,
      // One exit listener for claims and one for the beacon, not two of each.
      exitListeners: 2,
      errorAcross: true,
    });
    const allPorts = [...seen.ports, ...seen.workerPorts];
    expect(new Set(allPorts).size).toBe(8);
    // Both copies' claims were given back at the normal exit, not merely left to be reaped.
    expect(await listClaims({ stateDir: state.dir, includeDead: true })).toEqual([]);
  });
});
