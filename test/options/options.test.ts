import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { claimPorts, findSequentialPorts, PortAllocator } from '../../src/index.js';
import { defaultStateDir, resolveAllocatorOptions, resolveClaimOptions } from '../../src/options/options.js';
import { freeRunBase } from '../helpers/sockets.js';
import { snapshotDir, stateTest } from '../helpers/state-dir.js';

const it = stateTest;

// [option, value, error type] — each must be refused before any file is touched.
const badInputs: Array<[string, unknown, typeof TypeError | typeof RangeError]> = [
  ['count', 0, RangeError],
  ['count', -1, RangeError],
  ['count', 1.5, RangeError],
  ['count', Number.NaN, RangeError],
  ['count', '3', TypeError],
  ['base', 0, RangeError],
  ['base', 65536, RangeError],
  ['base', 8090.5, RangeError],
  ['base', '8090', TypeError],
  ['host', '', TypeError],
  ['host', 'not a host!', TypeError],
  ['host', 42, TypeError],
  ['label', 7, TypeError],
  ['pid', -5, RangeError],
  ['ttlMs', 0, RangeError],
  ['ttlMs', 10 * 365 * 24 * 60 * 60 * 1000 + 1, RangeError],
  ['ttlMs', Number.MAX_SAFE_INTEGER, RangeError],
  ['ttlMs', Number.POSITIVE_INFINITY, RangeError],
  ['protocol', 'sctp', RangeError],
  ['protocol', 6, TypeError],
  ['exclude', 8090, TypeError],
  ['exclude', [0], RangeError],
  ['exclude', [[9000, 8000]], RangeError],
  ['exclude', [[9000]], TypeError],
  ['exclude', ['8090'], TypeError],
  ['allowEphemeralPorts', 'yes', TypeError],
  ['allowUnsafePorts', 1, TypeError],
];

describe('bad input', () => {
  it.for(badInputs)('%s = %j throws %o naming the option, and changes nothing', async ([option, value, type], { stateDir }) => {
    const base = await freeRunBase(1);
    // A live claim is present, so "changes nothing" is checked against a real state file.
    const allocator = new PortAllocator({ stateDir });
    const lease = await allocator.claim({ base });
    const before = snapshotDir(stateDir);
    const error = await findSequentialPorts({ stateDir, [option]: value }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(type);
    expect((error as Error).message).toContain(`\`${option}\``);
    expect(snapshotDir(stateDir)).toEqual(before);
    await lease.release();
  });

  it('refuses a run that would pass 65535, naming count and where it would end', async ({ stateDir }) => {
    const error = await claimPorts({ stateDir: join(stateDir, 'untouched'), base: 65534, count: 3 }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RangeError);
    expect((error as Error).message).toMatch(/`count`.*65536/);
    expect(existsSync(join(stateDir, 'untouched'))).toBe(false);
  });

  it('rejects a bad positional call before touching the default state directory', async ({ stateDir }) => {
    const dir = join(stateDir, 'never-created');
    process.env.PORTLEASE_STATE_DIR = dir;
    try {
      await expect(findSequentialPorts(8090, 0)).rejects.toThrow(RangeError);
      expect(existsSync(dir)).toBe(false);
    } finally {
      delete process.env.PORTLEASE_STATE_DIR;
    }
  });

  it('rejects bad allocator settings when constructed', () => {
    expect(() => new PortAllocator({ staleMs: 10 })).toThrow(/`staleMs`/);
    expect(() => new PortAllocator({ lockTimeoutMs: -1 })).toThrow(/`lockTimeoutMs`/);
    expect(() => new PortAllocator({ stateDir: '' })).toThrow(/`stateDir`/);
    expect(() => new PortAllocator({ ephemeralPortRange: [60999, 32768] })).toThrow(/`ephemeralPortRange`/);
    expect(() => new PortAllocator({ ephemeralPortRange: [0, 100] })).toThrow(/`ephemeralPortRange`/);
    expect(() => new PortAllocator({ socketTable: 'no' as never })).toThrow(/`socketTable`/);
  });
});

describe('defaults', () => {
  it('fills each missing or undefined field with its default', () => {
    expect(resolveClaimOptions({ base: undefined, count: undefined })).toEqual({
      base: 8090,
      count: 1,
      host: '0.0.0.0',
      label: undefined,
      pid: process.pid,
      ttlMs: undefined,
      protocol: 'tcp',
      exclude: [],
      allowEphemeralPorts: false,
      allowUnsafePorts: false,
      allowReservedPorts: false,
      max: 65535,
      sticky: false,
    });
    expect(resolveClaimOptions({ exclude: [[20, 30], 5, [25, 40], 41] }).exclude).toEqual([
      [5, 5],
      [20, 41],
    ]);
    expect(resolveAllocatorOptions({ stateDir: '/x' })).toMatchObject({ ephemeralPortRange: undefined, socketTable: true });
  });

  it('takes the state directory from the option, else PORTLEASE_STATE_DIR, else a temporary directory named by uid', () => {
    expect(resolveAllocatorOptions({ stateDir: '/x' }, { PORTLEASE_STATE_DIR: '/y' }).stateDir).toBe('/x');
    expect(resolveAllocatorOptions({}, { PORTLEASE_STATE_DIR: '/y' }).stateDir).toBe('/y');
    const uid = process.getuid?.();
    if (uid === undefined) expect(defaultStateDir({})).toMatch(/portlease$/);
    else expect(defaultStateDir({})).toBe(join(tmpdir(), `portlease-${uid}`));
  });
});
