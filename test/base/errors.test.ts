import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isPortleaseError, LockTimeoutError, PortleaseError, PortsExhaustedError, StateIoError } from '../../src/index.js';
import { distEntry, fixturesDir } from '../helpers/processes.js';

describe('errors', () => {
  it('narrow by code and keep their fields', () => {
    const error: unknown = new LockTimeoutError('/tmp/x.lock', 10, 'cannot remove the stale lock /tmp/x.lock: ENOTEMPTY');
    expect(isPortleaseError(error)).toBe(true);
    expect(isPortleaseError(error, 'PORTLEASE_EXHAUSTED')).toBe(false);
    if (!isPortleaseError(error, 'PORTLEASE_LOCK_TIMEOUT')) throw new Error('not narrowed');
    // Narrowed to LockTimeoutError: its own fields, no cast.
    expect(error.lockPath).toBe('/tmp/x.lock');
    expect(error.breakFailure).toMatch(/ENOTEMPTY/);
    expect(error).toBeInstanceOf(PortleaseError);
    expect(error).not.toBeInstanceOf(PortsExhaustedError);
    expect(new StateIoError('x', undefined)).toBeInstanceOf(StateIoError);
    expect(new Error('x')).not.toBeInstanceOf(PortleaseError);
    expect(isPortleaseError({ code: 'PORTLEASE_STATE_IO' })).toBe(false); // a look-alike is not one
  });

  it("leave a caller's own subclass to the ordinary prototype check", () => {
    class AppError extends PortleaseError {}
    const mine = new AppError('PORTLEASE_STATE_IO', 'mine');
    expect(mine).toBeInstanceOf(AppError);
    expect(new LockTimeoutError('/tmp/x.lock', 10)).not.toBeInstanceOf(AppError);
    // Built with another code's value, it is still not that code's class.
    expect(mine).not.toBeInstanceOf(StateIoError);
    expect(mine).toBeInstanceOf(PortleaseError);
    // A look-alike that is not an Error is never one of ours.
    expect(Object.assign(Object.create(null), { [Symbol.for('portlease.error')]: true, code: 'PORTLEASE_STATE_IO' })).not.toBeInstanceOf(
      StateIoError,
    );
  });

  it('are recognised by another copy of the package in the same process', () => {
    const result = spawnSync(process.execPath, [join(fixturesDir, 'two-copies.mjs')], {
      env: { ...process.env, PORTLEASE_DIST: distEntry },
      encoding: 'utf8',
      timeout: 20_000,
    });
    expect(result.stderr).toBe('');
    expect(JSON.parse(result.stdout)).toEqual({
      sameModule: false,
      baseAcross: true,
      classAcross: true,
      otherClassAcross: false,
      guardAcross: true,
      guardWrongCode: false,
      plainError: false,
    });
  });
});
