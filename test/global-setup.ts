// Once per test run:
// - every test loads the same build: unit tests import src/, fixtures and the CLI run dist/,
//   so a dist/ older than src/ (a bare `vitest` after an edit) is built again first;
// - the users the cross-user suites make (test/helpers/users.ts) are removed at the end,
//   unless they were there before the run.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TEST_USER_NAMES, userExists } from './helpers/users.js';

const root = fileURLToPath(new URL('../', import.meta.url));

function newest(dir: string): number {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) latest = Math.max(latest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return latest;
}

function buildIfStale(): void {
  const built = join(root, 'dist', 'cli.cjs'); // the last file the build writes
  const sources = Math.max(newest(join(root, 'src')), newest(join(root, 'scripts')), statSync(join(root, 'package.json')).mtimeMs);
  if (existsSync(built) && statSync(built).mtimeMs >= sources) return;
  console.log('dist/ is older than src/: building it first (npm run build)');
  execFileSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' });
}

export default function setup(): () => void {
  buildIfStale();
  const existing = new Set(TEST_USER_NAMES.filter(userExists));
  return () => {
    for (const name of TEST_USER_NAMES) if (!existing.has(name) && userExists(name)) spawnSync('userdel', [name], { stdio: 'ignore' });
  };
}
