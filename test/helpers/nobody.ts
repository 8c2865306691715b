// The user nobody, for tests that act as another user: a copy of the build every user can read.
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { fixturesDir } from './processes.js';

const projectRoot = fileURLToPath(new URL('../../', import.meta.url));

/** Where the user `nobody` finds the build and the fixtures (see {@link nobodyReadableCopy}). */
export interface ReadableCopy {
  distEntry: string;
  fixturesDir: string;
}

let readableCopy: ReadableCopy | undefined;
/**
 * A copy of the build, the fixtures and the runtime dependencies in a directory every user
 * can read. A clone in a private directory (`mktemp -d` makes mode 0700, `/root` is 0700)
 * cannot be read by `nobody`; the tests that switch users run their fixtures from here
 * instead. Made once per test process; call {@link removeNobodyReadableCopy} in `afterAll`.
 */
export function nobodyReadableCopy(): ReadableCopy {
  if (readableCopy !== undefined) return readableCopy;
  const root = mkdtempSync(join(tmpdir(), 'portlease-readable-'));
  cpSync(join(projectRoot, 'dist'), join(root, 'dist'), { recursive: true });
  cpSync(join(projectRoot, 'package.json'), join(root, 'package.json'));
  cpSync(fixturesDir, join(root, 'fixtures'), { recursive: true });
  // The runtime dependencies and theirs (npm hoists them to the top of node_modules).
  const pending = Object.keys(readPackage(projectRoot).dependencies ?? {});
  const copied = new Set<string>();
  for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
    if (copied.has(name)) continue;
    copied.add(name);
    const from = join(projectRoot, 'node_modules', name);
    cpSync(from, join(root, 'node_modules', name), { recursive: true });
    pending.push(...Object.keys(readPackage(from).dependencies ?? {}));
  }
  for (const path of walk(root)) chmodSync(path, statSync(path).isDirectory() ? 0o755 : 0o644);
  readableCopy = { distEntry: join(root, 'dist', 'index.js'), fixturesDir: join(root, 'fixtures') };
  return readableCopy;
}

function readPackage(dir: string): { dependencies?: Record<string, string> } {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
}

function* walk(dir: string): Generator<string> {
  yield dir;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else yield path;
  }
}

/** Removes the copy made by {@link nobodyReadableCopy}, if any. */
export function removeNobodyReadableCopy(): void {
  if (readableCopy === undefined) return;
  rmSync(dirname(dirname(readableCopy.distEntry)), { recursive: true, force: true });
  readableCopy = undefined;
  nobodyCanRun = undefined;
}

let nobodyCanRun: boolean | undefined;
/**
 * Whether this process may switch to the user `nobody` (uid 65534, so it is root on Linux)
 * and `nobody` can load the build from {@link nobodyReadableCopy}.
 */
export function canRunAsNobody(): boolean {
  if (nobodyCanRun === undefined) {
    nobodyCanRun = false;
    if (process.platform === 'linux' && process.getuid?.() === 0) {
      const entry = nobodyReadableCopy().distEntry;
      nobodyCanRun =
        spawnSync(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(pathToFileURL(entry).href)})`], {
          uid: 65534,
          gid: 65534,
          stdio: 'ignore',
          timeout: 20_000,
        }).status === 0;
    }
  }
  return nobodyCanRun;
}

/** Why the tests that run as `nobody` are skipped, for their names. */
export const NOBODY_SKIP_REASON = 'skipped: needs root on Linux, and a temporary directory the user nobody can read';
