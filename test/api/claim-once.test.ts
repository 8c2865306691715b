import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { claimOnce, listClaims } from '../../src/index.js';
import { makeStateDir } from '../helpers/state-dir.js';

const fixture = join(import.meta.dirname, '..', 'fixtures', 'claim-once-tree.mjs');
const distEntry = join(import.meta.dirname, '..', '..', 'dist', 'index.js');

describe('claimOnce', () => {
  const state = makeStateDir();
  afterEach(() => {
    delete process.env.PORTLEASE_ONCE_WEB;
    state.cleanup();
  });

  it('claims in the first process of a tree and gives its descendants the same ports', async () => {
    const result = spawnSync(process.execPath, [fixture], {
      env: { ...process.env, PORTLEASE_DIST: distEntry, PORTLEASE_STATE_DIR: state.dir },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(result.stderr).toBe('');
    const { parent, child } = JSON.parse(result.stdout);
    expect(parent.ports).toHaveLength(2);
    expect(child.ports).toEqual(parent.ports);
    // The claim belongs to the first process; the child only inherited it.
    expect(parent.owner).toBe(parent.pid);
    expect(child.owner).toBe(parent.pid);
    // The first process's normal exit gave the claim back.
    expect(await listClaims({ stateDir: state.dir, includeDead: true })).toEqual([]);
  });

  it('ignores an inherited value whose ports are no longer held, and claims anew', async () => {
    process.env.PORTLEASE_ONCE_WEB = JSON.stringify({ pid: 999_999_999, ports: [9], host: '127.0.0.1' });
    const lease = await claimOnce('web', { stateDir: state.dir, host: '127.0.0.1' });
    expect(lease.pid).toBe(process.pid);
    expect(lease.ports).not.toEqual([9]);
    expect(JSON.parse(process.env.PORTLEASE_ONCE_WEB!).ports).toEqual(lease.ports);
    // A second call in the same process gets the same ports; its lease does not release them.
    const again = await claimOnce('web', { stateDir: state.dir });
    expect(again.ports).toEqual(lease.ports);
    await again.release();
    expect((await listClaims({ stateDir: state.dir })).map((claim) => claim.ports)).toEqual([[...lease.ports]]);
    await lease.release();
  });

  it('makes one claim when called twice at once in the first process', async () => {
    const [first, second] = await Promise.all([
      claimOnce('web', { stateDir: state.dir, host: '127.0.0.1' }),
      claimOnce('web', { stateDir: state.dir, host: '127.0.0.1' }),
    ]);
    expect(second.ports).toEqual(first.ports);
    expect(await listClaims({ stateDir: state.dir })).toHaveLength(1);
    await first.release();
  });

  it('rejects a name that cannot be part of an environment variable', async () => {
    await expect(claimOnce('web-server')).rejects.toThrow(TypeError);
  });
});
