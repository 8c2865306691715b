// Once per test run: the users the cross-user suites make (test/helpers/users.ts) are removed
// at the end, unless they were there before the run.
import { spawnSync } from 'node:child_process';
import { TEST_USER_NAMES, userExists } from './helpers/users.js';

export default function setup(): () => void {
  const existing = new Set(TEST_USER_NAMES.filter(userExists));
  return () => {
    for (const name of TEST_USER_NAMES) if (!existing.has(name) && userExists(name)) spawnSync('userdel', [name], { stdio: 'ignore' });
  };
}
