// Test state directories: a fresh one per test (a vitest fixture), their files as text, the claims in them.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test as base } from 'vitest';
import { PortAllocator } from '../../src/index.js';
import { type ClaimRecord, StateStore } from '../../src/store/store.js';

/** A fresh private state directory; removed by the returned cleanup. */
export function makeStateDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'portlease-test-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }) };
}

/** The state file(s) of a state directory, as text (for "unchanged" assertions). */
export function snapshotDir(dir: string): Record<string, string> {
  if (!existsSync(dir)) return {};
  const files: Record<string, string> = {};
  for (const name of readdirSync(dir)) {
    try {
      files[name] = readFileSync(join(dir, name), 'utf8');
    } catch {
      files[name] = '<dir>';
    }
  }
  return files;
}

/** The claims stored in a state file, read as a fresh process would (no cache, no repair). */
export function storedClaims(stateFile: string): ClaimRecord[] {
  return new StateStore(stateFile).load({ repair: false }).claims;
}

/**
 * `test` with fixtures: `stateDir`, a fresh private state directory for each test that asks
 * for it; after the test, every claim this process still holds there is released (so that
 * no port token outlives its test) and the directory removed. `allocator`, a PortAllocator on
 * it. Use them instead of `beforeEach`/`afterEach` hooks:
 * `stateTest('...', async ({ stateDir }) => { ... })`.
 */
export const stateTest = base.extend<{ stateDir: string; allocator: PortAllocator }>({
  // eslint-disable-next-line no-empty-pattern -- vitest reads the fixtures a function asks for from its first parameter
  stateDir: async ({}, use) => {
    const { dir, cleanup } = makeStateDir();
    try {
      await use(dir);
    } finally {
      await new PortAllocator({ stateDir: dir }).releaseWhere({ pid: process.pid }).catch(() => undefined);
      cleanup();
    }
  },
  allocator: async ({ stateDir }, use) => {
    await use(new PortAllocator({ stateDir }));
  },
});
