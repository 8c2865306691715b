import { describe, expect } from 'vitest';
import { freeRunBase } from '../helpers/sockets.js';
import { stateTest } from '../helpers/state-dir.js';
import { listClaims, runBash } from './run-cli.js';

const it = stateTest;

// Out of file descriptors is not "no free ports": every probe would fail the same way.
describe.skipIf(process.platform === 'win32')('a probe that runs out of file descriptors (ulimit -n in the child)', () => {
  it('fails at once with PORTLEASE_RESOURCES, exit 1, and claims nothing', async ({ stateDir }) => {
    const base = await freeRunBase(50);
    // 50 descriptors let Node load the CLI; 50 parallel probe sockets then run out.
    const result = await runBash(`ulimit -n 50; exec "$NODE" "$CLI" claim --count 50 --base ${base} --state-dir "$STATE_DIR"`, {
      STATE_DIR: stateDir,
    });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^portlease: PORTLEASE_RESOURCES: Cannot (?:probe ports|hold port tokens): EMFILE .*ulimit -n/);
    expect(await listClaims(stateDir)).toEqual([]);
  });
});
