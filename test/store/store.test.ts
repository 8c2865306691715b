import {
  appendFileSync,
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, vi } from 'vitest';
import { PortAllocator, StateIoError } from '../../src/index.js';
import { type ClaimRecord, CORRUPT_STATE_WARNING, STATE_VERSION, StateStore } from '../../src/store/store.js';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { currentBootId } from '../../src/base/proc.js';
import { statePaths } from '../../src/store/state-dir.js';
import { distEntry, fixturesDir, killAll, nextMessage } from '../helpers/processes.js';
import { freeRunBase } from '../helpers/sockets.js';
import { stateTest, storedClaims } from '../helpers/state-dir.js';

const it = stateTest;

/** Mounting a tmpfs needs root (CI runs as root); elsewhere the full-disk case is skipped, and says so. */
const canMountTmpfs = ((): boolean => {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  const probe = mkdtempSync(join(tmpdir(), 'portlease-mount-'));
  try {
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', probe]).status !== 0) return false;
    spawnSync('umount', [probe]);
    return true;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
})();
if (!canMountTmpfs) console.warn('state.test.ts: skipping the full-disk case: mounting a tmpfs needs root on Linux');

afterEach(() => {
  vi.restoreAllMocks();
});

function record(start: number, id = `id${start}`): ClaimRecord {
  return { id, start, count: 1, host: '0.0.0.0', pid: 1, createdAt: 0 };
}

const corruptContents: Array<[string, string | Buffer]> = [
  ['empty', ''],
  ['truncated JSON', '{"version":2,"claims":[{"id":"a","start":80'],
  ['a version that is not a number', `${JSON.stringify({ version: 'two', claims: [] })}\n`],
  ['an old version-1 file', `${JSON.stringify({ version: 1, claims: [] })}\n`],
  ['garbage bytes', Buffer.from([0xff, 0x00, 0xfe, 0x13, 0x37, 0x80, 0x81, 0x0a])],
];

describe('a corrupt state file', () => {
  it.for(corruptContents)('%s: is set aside with one warning, and claims continue', async ([, content], { stateDir }) => {
    const allocator = new PortAllocator({ stateDir });
    writeFileSync(allocator.stateFile, content);
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const base = await freeRunBase(1);
      expect((await allocator.claim({ base })).port).toBe(base);
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    const aside = readdirSync(stateDir).filter((name) => name.includes('.corrupt-'));
    expect(aside).toHaveLength(1);
    expect(readFileSync(join(stateDir, aside[0]!))).toEqual(Buffer.from(content));
    expect(JSON.parse(readFileSync(allocator.stateFile, 'utf8').split('\n')[0]!).version).toBe(STATE_VERSION);
    expect(storedClaims(allocator.stateFile)).toHaveLength(1);
    expect(warnings.filter((warning) => (warning as NodeJS.ErrnoException).code === CORRUPT_STATE_WARNING)).toHaveLength(1);
    await allocator.release();
  });

  it('of a newer format is refused with PORTLEASE_STATE_IO and left in place, never discarded', async ({ stateDir }) => {
    const allocator = new PortAllocator({ stateDir });
    const newer = `${JSON.stringify({ version: 99, claims: [] })}\n`;
    writeFileSync(allocator.stateFile, newer);
    const error = await allocator.claim({ base: await freeRunBase(1) }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(StateIoError);
    expect((error as Error).message).toMatch(/newer portlease \(format 99, this one reads 3\)/);
    expect(readFileSync(allocator.stateFile, 'utf8')).toBe(newer);
    expect(readdirSync(stateDir).filter((name) => name.includes('.corrupt-'))).toEqual([]);
  });

  it('is left in place by a reader without the lock (list), which sees no claims', async ({ stateDir }) => {
    const allocator = new PortAllocator({ stateDir });
    writeFileSync(allocator.stateFile, 'nonsense');
    expect(await allocator.list()).toEqual([]);
    expect(readFileSync(allocator.stateFile, 'utf8')).toBe('nonsense');
  });
});

describe('malformed records', () => {
  const good = (start: number, id: string): ClaimRecord => ({
    id,
    start,
    count: 1,
    host: '0.0.0.0',
    pid: process.pid,
    createdAt: Date.now(),
  });
  const bad: unknown[] = [
    { id: 'port', start: 70000, count: 1, host: '0.0.0.0', pid: 1, createdAt: 0 },
    { id: 'count', start: 9000, count: -1, host: '0.0.0.0', pid: 1, createdAt: 0 },
    { id: 'pid', start: 9000, count: 1, host: '0.0.0.0', pid: 'x', createdAt: 0 },
    { id: 'created', start: 9000, count: 1, host: '0.0.0.0', pid: 1, createdAt: null },
    'not a record',
  ];

  it('cost themselves only: the valid claims of the header and of a change line survive, and a copy is kept with one warning', async ({
    stateDir,
  }) => {
    const allocator = new PortAllocator({ stateDir });
    const base = await freeRunBase(4);
    const bootId = currentBootId();
    const header = { version: STATE_VERSION, gen: 'g1', ...(bootId === undefined ? {} : { bootId }), claims: [good(base, 'a'), ...bad] };
    // One change line with a valid record next to invalid ones, and a key that is not a string.
    const change = { g: 'g1', at: 0, w: 'w1', add: [...bad, good(base + 1, 'b')], drop: [42] };
    writeFileSync(allocator.stateFile, `${JSON.stringify(header)}\n${JSON.stringify(change)}\n`);
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const lease = await allocator.claim({ base });
      // The two valid claims still hold their ports.
      expect(lease.port).toBe(base + 2);
      await new Promise((resolve) => setImmediate(resolve));
    } finally {
      process.off('warning', onWarning);
    }
    expect(
      storedClaims(allocator.stateFile)
        .map((claim) => claim.start)
        .sort(),
    ).toEqual([base, base + 1, base + 2]);
    expect(readdirSync(stateDir).filter((name) => name.includes('.damaged-g1'))).toHaveLength(1);
    expect(readdirSync(stateDir).filter((name) => name.includes('.corrupt-'))).toEqual([]);
    expect(warnings.filter((warning) => (warning as NodeJS.ErrnoException).code === CORRUPT_STATE_WARNING)).toHaveLength(1);
    expect(warnings[0]!.message).toMatch(/held 11 malformed record/);
    await allocator.release();
  });

  it('a state file over the size limit is set aside with a warning, not read into one string', async ({ stateDir }) => {
    const allocator = new PortAllocator({ stateDir });
    // Sparse: 65 MiB that take no disk.
    const fd = openSync(allocator.stateFile, 'w');
    writeSync(fd, Buffer.from('{'), 0, 1, 65 * 2 ** 20);
    closeSync(fd);
    const onWarning = () => undefined;
    process.on('warning', onWarning);
    try {
      const base = await freeRunBase(1);
      expect((await allocator.claim({ base })).port).toBe(base);
    } finally {
      process.off('warning', onWarning);
    }
    expect(readdirSync(stateDir).filter((name) => name.includes('.corrupt-'))).toHaveLength(1);
    await allocator.release();
  });
});

describe('StateStore', () => {
  it('appends one line per change and reads back the same claims in a fresh store', ({ stateDir }) => {
    const path = join(stateDir, 'state.jsonl');
    const store = new StateStore(path);
    const state = store.load({ repair: true });
    state.claims.push(record(9000), record(9001));
    store.commit(state);
    const next = store.load({ repair: true });
    next.claims = next.claims.filter((claim) => claim.start !== 9000);
    next.claims.push(record(9002));
    store.commit(next);
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(2); // the first commit wrote the snapshot, the second appended
    // The line names the generation and the state it follows (one accepted line before it).
    expect(JSON.parse(lines[1]!)).toMatchObject({ g: JSON.parse(lines[0]!).gen, at: 0, add: [record(9002)], drop: ['id9000:9000'] });
    expect(new StateStore(path).load({ repair: true }).claims.map((claim) => claim.start)).toEqual([9001, 9002]);
  });

  it('stores exactly the changes whatever the caller did to the array: dropped in the middle, reordered, added in between', ({
    stateDir,
  }) => {
    const path = join(stateDir, 'state.jsonl');
    const store = new StateStore(path);
    const first = store.load({ repair: true });
    first.claims.push(record(9000), record(9001), record(9002), record(9003));
    store.commit(first);
    const changes: Array<(claims: ClaimRecord[]) => ClaimRecord[]> = [
      (claims) => claims.filter((claim) => claim.start !== 9001),
      (claims) => [...claims].reverse(),
      (claims) => [claims[0]!, record(9004), ...claims.slice(1)],
      (claims) => [...claims.slice(1), record(9005), claims[0]!].filter((claim) => claim.start !== 9003),
    ];
    let expected = first.claims.map((claim) => claim.start);
    for (const change of changes) {
      const state = store.load({ repair: true });
      state.claims = change(state.claims);
      expected = state.claims.map((claim) => claim.start);
      expect(store.commit(state)).toBe(true);
      const fresh = new StateStore(path).load({ repair: true }).claims.map((claim) => claim.start);
      expect(fresh.sort()).toEqual([...expected].sort());
    }
    expect(expected.sort()).toEqual([9000, 9002, 9004, 9005]);
  });

  it('sees what another store (process) appended or compacted since it last looked', ({ stateDir }) => {
    const path = join(stateDir, 'state.jsonl');
    const mine = new StateStore(path);
    const theirs = new StateStore(path);
    const first = mine.load({ repair: true });
    first.claims.push(record(9000));
    mine.commit(first);
    const other = theirs.load({ repair: true });
    other.claims.push(record(9001));
    theirs.commit(other);
    expect(mine.load({ repair: true }).claims.map((claim) => claim.start)).toEqual([9000, 9001]);
    // Enough changes for their store to compact into a new file.
    for (let i = 0; i < 400; i++) {
      const state = theirs.load({ repair: true });
      state.claims = state.claims.filter((claim) => claim.start !== 9001);
      state.claims.push({ ...record(9001), createdAt: i, label: 'x'.repeat(40) });
      theirs.commit(state);
    }
    expect(readFileSync(path, 'utf8').trimEnd().split('\n').length).toBeLessThan(400);
    expect(mine.load({ repair: true }).claims).toEqual(new StateStore(path).load({ repair: true }).claims);
    expect(mine.load({ repair: true }).claims.find((claim) => claim.start === 9001)?.createdAt).toBe(399);
  });

  it('skips a line cut short by a crashed writer, keeping every committed change', ({ stateDir }) => {
    const path = join(stateDir, 'state.jsonl');
    const store = new StateStore(path);
    const state = store.load({ repair: true });
    state.claims.push(record(9000));
    store.commit(state);
    // What a writer killed in the middle of its write leaves behind.
    appendFileSync(path, '{"add":[{"id":"torn","start":9001,"cou');
    const fresh = new StateStore(path);
    expect(fresh.load({ repair: true }).claims.map((claim) => claim.start)).toEqual([9000]);
    const next = fresh.load({ repair: true });
    next.claims.push(record(9002));
    fresh.commit(next);
    expect(new StateStore(path).load({ repair: true }).claims.map((claim) => claim.start)).toEqual([9000, 9002]);
    expect(store.load({ repair: true }).claims.map((claim) => claim.start)).toEqual([9000, 9002]);
  });

  it('never applies a line cut one byte short (a whole JSON object without its newline), even once the next writer ends it', ({
    stateDir,
  }) => {
    const path = join(stateDir, 'state.jsonl');
    const store = new StateStore(path);
    store.commit({ claims: [record(9000)] });
    const gen = (JSON.parse(readFileSync(path, 'utf8').split('\n')[0]!) as { gen: string }).gen;
    // A writer whose write stopped one byte short: the line is complete JSON, the newline missing.
    appendFileSync(path, JSON.stringify({ g: gen, at: 0, w: 'cut-short', add: [record(9001)], drop: [] }));
    const next = store.load({ repair: true });
    expect(next.claims.map((claim) => claim.start)).toEqual([9000]);
    next.claims.push(record(9002));
    expect(store.commit(next)).toBe(true);
    expect(new StateStore(path).load({ repair: false }).claims.map((claim) => claim.start)).toEqual([9000, 9002]);
  });

  it('writes a new snapshot when the boot changes', ({ stateDir }) => {
    const path = join(stateDir, 'state.jsonl');
    const store = new StateStore(path);
    store.commit({ bootId: 'a', claims: [record(9000)] });
    const inode = statSync(path).ino;
    store.load({ repair: true });
    store.commit({ bootId: 'b', claims: [] });
    expect(statSync(path).ino).not.toBe(inode);
    expect(JSON.parse(readFileSync(path, 'utf8'))).toMatchObject({ version: STATE_VERSION, bootId: 'b', claims: [] });
  });

  it('warns only once per file and process', ({ stateDir }) => {
    const path = join(stateDir, 'claims-once.jsonl');
    const warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    writeFileSync(path, 'nope');
    new StateStore(path).load({ repair: true });
    writeFileSync(path, 'nope again');
    new StateStore(path).load({ repair: true });
    expect(warn).toHaveBeenCalledTimes(1);
    expect(warn.mock.calls[0]![1]).toMatchObject({ code: CORRUPT_STATE_WARNING });
  });

  it.skipIf(process.platform !== 'linux')(
    'on a short append (file size limit), records nothing and raises PORTLEASE_STATE_IO',
    async ({ stateDir }) => {
      const path = statePaths(stateDir).stateFile;
      const store = new StateStore(path);
      // A state file of exactly 1,000 bytes, of this boot, so the next claim appends: a header,
      // then a blank line as padding (readers skip lines that are not changes).
      const bootId = currentBootId();
      store.commit({ ...(bootId ? { bootId } : {}), claims: [record(9000)] });
      appendFileSync(path, `${' '.repeat(999 - statSync(path).size)}\n`);
      expect(statSync(path).size).toBe(1000);
      const before = readFileSync(path);
      // A real short write: under `ulimit -f 1` the kernel stops the file at 1,024 bytes.
      const child = spawn(
        'bash',
        ['-c', `ulimit -f 1; exec "${process.execPath}" "${join(fixturesDir, 'claim-once.mjs')}" "${stateDir}" 30000`],
        {
          env: { ...process.env, PORTLEASE_DIST: distEntry },
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        },
      );
      try {
        const report = await nextMessage<{ code?: string; message?: string; ports?: number[] }>(child);
        expect(report.code).toBe('PORTLEASE_STATE_IO');
        expect(report.message).toMatch(/only 24 of \d+ bytes were written/);
      } finally {
        killAll([child]);
      }
      // What was there is intact; the fragment is never read as a change, so the claim was never recorded.
      expect(readFileSync(path).subarray(0, 1000)).toEqual(before);
      expect(new StateStore(path).load({ repair: false }).claims.map((stored) => stored.start)).toEqual([9000]);
    },
  );

  describe.skipIf(!canMountTmpfs)('on a full disk (a real 64 KiB tmpfs)', () => {
    let disk: string;
    beforeEach(() => {
      disk = mkdtempSync(join(tmpdir(), 'portlease-disk-'));
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', disk]);
    });
    afterEach(() => {
      execFileSync('umount', [disk]);
      rmSync(disk, { recursive: true, force: true });
    });

    it('keeps the old file intact, leaves no new generation behind and raises PORTLEASE_STATE_IO', () => {
      const path = join(disk, 'state.jsonl');
      const store = new StateStore(path);
      expect(store.commit({ claims: [record(9000)] })).toBe(true);
      const before = readFileSync(path, 'utf8');
      // Fill the rest of the disk.
      const filler = Buffer.alloc(4096, 120);
      const fd = openSync(join(disk, 'filler'), 'w');
      try {
        for (let i = 0; i < 64; i++) writeSync(fd, filler);
      } catch (error) {
        expect((error as NodeJS.ErrnoException).code).toBe('ENOSPC');
      } finally {
        closeSync(fd);
      }
      store.load({ repair: true });
      let caught: unknown;
      try {
        store.commit({ bootId: 'other', claims: [] }); // a boot change writes a new generation
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(StateIoError);
      expect((caught as StateIoError).code).toBe('PORTLEASE_STATE_IO');
      expect(((caught as StateIoError).cause as NodeJS.ErrnoException).code).toBe('ENOSPC');
      expect(readFileSync(path, 'utf8')).toBe(before);
      expect(readdirSync(disk).sort()).toEqual(['filler', 'state.jsonl']);
      expect(new StateStore(path).load({ repair: false }).claims).toEqual([record(9000)]);
    });
  });
});
