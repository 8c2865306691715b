import { readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PortAllocator, StateIoError } from '../src/index.js';
import { CORRUPT_STATE_WARNING, readState, writeState, type StateData } from '../src/state.js';
import { freeRunBase, makeStateDir } from './helpers.js';

let stateDir: string;
let cleanup: () => void;
beforeEach(() => ({ dir: stateDir, cleanup } = makeStateDir()));
afterEach(() => {
  vi.restoreAllMocks();
  cleanup();
});

const corruptContents: Array<[string, string | Buffer]> = [
  ['empty', ''],
  ['truncated JSON', '{"version":1,"claims":[{"id":"a","start":80'],
  ['a wrong version', JSON.stringify({ version: 99, claims: [] })],
  ['garbage bytes', Buffer.from([0xff, 0x00, 0xfe, 0x13, 0x37, 0x80, 0x81])],
  ['a malformed claim', JSON.stringify({ version: 1, claims: [{ id: 'x', start: 70000, count: 1 }] })],
];

describe('a corrupt state file', () => {
  it.each(corruptContents)('%s: is set aside with a warning, and claims continue', async (_, content) => {
    const allocator = new PortAllocator({ stateDir });
    writeFileSync(allocator.stateFile, content);
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const base = await freeRunBase(1);
      const lease = await allocator.claim({ base });
      expect(lease.port).toBe(base);
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
      await allocator.release();
    }
    const aside = readdirSync(stateDir).filter((name) => name.includes('.corrupt-'));
    expect(aside).toHaveLength(1);
    expect(readFileSync(join(stateDir, aside[0]!))).toEqual(Buffer.from(content));
    expect(JSON.parse(readFileSync(allocator.stateFile, 'utf8')).version).toBe(1);
    expect(warnings.filter((warning) => (warning as NodeJS.ErrnoException).code === CORRUPT_STATE_WARNING)).toHaveLength(1);
  });

  it('warns only once per file and process', async () => {
    const path = join(stateDir, 'claims-once.json');
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    writeFileSync(path, 'nope');
    readState(path);
    writeFileSync(path, 'nope again');
    readState(path);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![1]).toMatchObject({ code: CORRUPT_STATE_WARNING });
  });
});

describe('writeState', () => {
  const state: StateData = { version: 1, claims: [{ id: 'a', start: 9000, count: 2, host: '0.0.0.0', pid: 1, createdAt: 0 }] };

  it('replaces the file whole and leaves no temporary file', () => {
    const path = join(stateDir, 'state.json');
    writeState(path, state, false);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual(state);
    expect(readdirSync(stateDir)).toEqual(['state.json']);
  });

  it.skipIf(process.platform !== 'linux')('on a full disk, keeps the old file intact and raises PORTLEASE_STATE_IO', () => {
    const path = join(stateDir, 'state.json');
    writeState(path, state, false);
    const before = readFileSync(path, 'utf8');
    // A real ENOSPC: the temporary file is a symlink to /dev/full, which rejects every write.
    symlinkSync('/dev/full', `${path}.tmp-${process.pid}`);
    let caught: unknown;
    try {
      writeState(path, { version: 1, claims: [] }, false);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(StateIoError);
    expect((caught as StateIoError).code).toBe('PORTLEASE_STATE_IO');
    expect(((caught as StateIoError).cause as NodeJS.ErrnoException).code).toBe('ENOSPC');
    expect(readFileSync(path, 'utf8')).toBe(before);
    expect(readdirSync(stateDir)).toEqual(['state.json']);
  });
});
