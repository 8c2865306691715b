import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { PortAllocator } from '../../src/index.js';
import { MAX_STICKY_LABELS, readStickyMemory, rememberSticky } from '../../src/store/sticky-memory.js';
import { freeRunBase } from '../helpers/sockets.js';
import { stateTest } from '../helpers/state-dir.js';

const it = stateTest;

describe('sticky memory', () => {
  it('keeps the most recently used labels only, newest first', ({ stateDir }) => {
    const file = join(stateDir, 'sticky.json');
    for (let i = 0; i < MAX_STICKY_LABELS + 5; i++) rememberSticky(file, { label: `l${i}`, start: 10000 + i, count: 1, usedAt: i }, 0o600);
    rememberSticky(file, { label: 'l10', start: 20000, count: 2, usedAt: 999 }, 0o600);
    const entries = readStickyMemory(file);
    expect(entries).toHaveLength(MAX_STICKY_LABELS);
    expect(entries[0]).toEqual({ label: 'l10', start: 20000, count: 2, usedAt: 999 });
    expect(entries.map((entry) => entry.label)).not.toContain('l4');
    expect(entries.map((entry) => entry.label)).toContain('l5');
    if (process.platform !== 'win32') expect(statSync(file).mode & 0o777).toBe(0o600);
  });

  it('reads a damaged file as empty, and a sticky claim then rewrites it', async ({ stateDir }) => {
    const allocator = new PortAllocator({ stateDir });
    const file = join(stateDir, readStickyFileName(allocator));
    writeFileSync(file, '{"version":1,"labels":[{"label":"x","start":0,"count":1,"usedAt":1}, 5]');
    expect(readStickyMemory(file)).toEqual([]);
    const base = await freeRunBase(1);
    const lease = await allocator.claim({ base, sticky: true, label: 'x' });
    expect(allocator.listSticky()).toMatchObject([{ label: 'x', ports: [base] }]);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toMatchObject({ version: 1, labels: [{ label: 'x', start: base, count: 1 }] });
    await lease.release();
  });

  it('refuses sticky without a label, before touching any file', async ({ stateDir }) => {
    const allocator = new PortAllocator({ stateDir });
    await expect(allocator.claim({ sticky: true })).rejects.toThrow(TypeError);
    await expect(allocator.claim({ sticky: 'yes' as unknown as boolean, label: 'a' })).rejects.toThrow(/`sticky` to be a boolean/);
  });
});

function readStickyFileName(allocator: PortAllocator): string {
  return allocator.stateFile.replace(/^.*claims-(.*)\.jsonl$/, 'sticky-$1.json');
}
