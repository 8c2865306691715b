import { spawn, type SpawnOptions } from 'node:child_process';
import { chownSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { statePaths } from '../../src/store/state-dir.js';
import { canRunAsNobody, NOBODY_SKIP_REASON, nobodyReadableCopy, removeNobodyReadableCopy } from '../helpers/nobody.js';
import { makeStateDir } from '../helpers/state-dir.js';
import { cliPath, startCli } from './run-cli.js';
import { exited } from '../helpers/processes.js';

// A stale lock that cannot be removed used to make the waiter spin at 100 % CPU in a
// synchronous loop: lockTimeoutMs never fired and SIGTERM (handled in JavaScript once
// proper-lockfile's signal-exit is loaded) was never heard. Each case runs the real CLI as
// users do, through `timeout`, and must end by itself with PORTLEASE_LOCK_TIMEOUT and the
// reason, after the default 10 s lock timeout, or at once on SIGTERM.
const hasTimeout = process.platform === 'linux';

// The tests run concurrently (each waits out a 10 s timeout), so each has its own directory.
const cleanups: Array<() => void> = [];
function freshStateDir(): string {
  const { dir, cleanup } = makeStateDir();
  cleanups.push(cleanup);
  return dir;
}
afterAll(() => {
  for (const cleanup of cleanups) cleanup();
  removeNobodyReadableCopy();
});

function lockPathIn(dir: string): string {
  return `${statePaths(dir).stateFile}.lock`;
}

/** `timeout -k 20 15 node dist/cli.cjs claim --state-dir DIR`, the issue's reproduction. */
function claimThroughTimeout(dir: string, cli = cliPath, options: SpawnOptions = {}) {
  const child = spawn('timeout', ['-k', '20', '15', process.execPath, cli, 'claim', '--state-dir', dir, '--ttl', '5s'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...options,
  });
  return exited(child, 40_000);
}

describe.skipIf(!hasTimeout).concurrent('a stale lock that cannot be removed', () => {
  it('not empty (an NFS .nfsXXXX file inside): exit 4, PORTLEASE_LOCK_TIMEOUT, ENOTEMPTY', async () => {
    const stateDir = freshStateDir();
    mkdirSync(lockPathIn(stateDir), { recursive: true });
    writeFileSync(join(lockPathIn(stateDir), '.nfs0001'), '');
    const started = performance.now();
    const result = await claimThroughTimeout(stateDir);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^portlease: PORTLEASE_LOCK_TIMEOUT: .*ENOTEMPTY/);
    expect(result.code).toBe(4); // not 124: `timeout` never had to step in
    expect(performance.now() - started).toBeLessThan(15_000);
  });

  it('a plain file at the lock path: exit 4 with the reason', async () => {
    const stateDir = freshStateDir();
    mkdirSync(stateDir, { recursive: true });
    writeFileSync(lockPathIn(stateDir), 'not a lock');
    const result = await claimThroughTimeout(stateDir);
    expect(result.stderr).toMatch(/^portlease: PORTLEASE_LOCK_TIMEOUT: .*ENOTDIR/);
    expect(result.code).toBe(4);
  });

  it('is interrupted by SIGTERM at once while it waits (the event loop keeps running)', async () => {
    const stateDir = freshStateDir();
    mkdirSync(lockPathIn(stateDir), { recursive: true });
    writeFileSync(join(lockPathIn(stateDir), '.nfs0001'), '');
    const child = startCli(['claim', '--state-dir', stateDir, '--ttl', '5s']);
    const done = exited(child, 30_000);
    // Past the 2 s stale time, so the waiter is failing to break the lock when the signal comes.
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const signalledAt = performance.now();
    child.kill('SIGTERM');
    const result = await done;
    expect(result.signal === 'SIGTERM' || result.code === 143).toBe(true);
    expect(performance.now() - signalledAt).toBeLessThan(2000);
  });

  it.skipIf(!canRunAsNobody())(
    `another user's stale lock that holds a file (rmdir: ENOTEMPTY): exit 4 with the reason${canRunAsNobody() ? '' : ` (${NOBODY_SKIP_REASON})`}`,
    async () => {
      const stateDir = freshStateDir();
      // nobody's own directory, with a lock directory of root's in it that nobody cannot empty.
      chownSync(stateDir, 65534, 65534);
      mkdirSync(lockPathIn(stateDir), { mode: 0o755 });
      writeFileSync(join(lockPathIn(stateDir), 'root-only'), '');
      const cli = join(dirname(nobodyReadableCopy().distEntry), 'cli.cjs');
      const result = await claimThroughTimeout(stateDir, cli, { env: process.env, uid: 65534, gid: 65534 });
      expect(result.stderr).toMatch(/^portlease: PORTLEASE_LOCK_TIMEOUT: .*ENOTEMPTY/);
      expect(result.code).toBe(4);
      rmSync(lockPathIn(stateDir), { recursive: true, force: true });
    },
  );
});
