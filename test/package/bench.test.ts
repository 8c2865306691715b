import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = fileURLToPath(new URL('../../bench/run.mjs', import.meta.url));

// The benchmarks are not part of the test suite, but their code is: a tiny run keeps it from
// rotting. No timing is asserted (the machine is shared and noisy); only that every table
// is produced with every subject, and that portlease handed out no duplicate.
describe('benchmark harness (quick smoke run)', () => {
  it('produces every table with every subject, the goals and the profile', async () => {
    const { stdout } = await promisify(execFile)(process.execPath, [run, '--quick'], { timeout: 120_000 });
    for (const heading of [
      '## 1. Hot',
      '## 2. Contention',
      '## 3. Growth',
      '## 4. Cold',
      '## 5. Goals',
      "## 6. Where a first claim's CPU goes",
    ])
      expect(stdout).toContain(heading);
    expect(stdout).toMatch(/\| cold CLI claim, × node -e 0 \| [\d.]+× \| ≤ 1\.3× \| (met|not met) \|/);
    // The profile names the claim itself, whatever else it finds.
    expect(stdout).toMatch(/\| claim \| [\d.]+ ms \|/);
    for (const subject of ['| floor |', '| portlease claim |', '| get-port |', '| portfinder |', '| get-port-please |'])
      expect(stdout).toContain(subject);
    expect(stdout).toMatch(/\| portlease \| 4 \| .* \| 0 of 12 \| 0 \|/);
    expect(stdout).toContain('| node -e 0 |');
  }, 150_000);
});
