import { describe, expect } from 'vitest';
import { stateTest } from '../helpers/state-dir.js';
import { listClaims, runBash } from './run-cli.js';

const it = stateTest;

// `portlease list | head -1`, `portlease claim | true`: the reader is gone before the CLI
// writes (it starts in ~100 ms, `true` in ~1 ms), so the write meets EPIPE.
describe('a reader that went away (EPIPE)', () => {
  it('ends claim and list quietly with the status of SIGPIPE, and the claim stays recorded', async ({ stateDir }) => {
    const script = `
      "$NODE" "$CLI" claim --ttl 1m --label piped --state-dir "$STATE_DIR" | true; echo "claim \${PIPESTATUS[0]}"
      "$NODE" "$CLI" list --state-dir "$STATE_DIR" | true; echo "list \${PIPESTATUS[0]}"`;
    const result = await runBash(script, { STATE_DIR: stateDir });
    expect(result.stderr).toBe('');
    // 141 (128 + SIGPIPE) when the write met the closed pipe; 0 if the reader was still there.
    for (const line of result.stdout.trim().split('\n')) expect(line).toMatch(/^(claim|list) (141|0)$/);
    expect(result.stdout).toMatch(/141/);
    expect(await listClaims(stateDir)).toMatchObject([{ label: 'piped', status: 'live' }]);
  });
});
