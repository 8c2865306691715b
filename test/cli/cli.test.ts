import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { runCli } from './run-cli.js';

const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };

describe('the portlease command', () => {
  it('prints its version from package.json', async () => {
    expect(await runCli(['--version'])).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: '' });
    expect((await runCli(['-V'])).stdout).toBe(`${version}\n`);
  });

  it('prints help for the tool and for each command, with the exit codes', async () => {
    const tool = await runCli(['--help']);
    expect(tool.code).toBe(0);
    for (const command of ['claim', 'release', 'list', 'reap', 'exec']) expect(tool.stdout).toContain(`  ${command} `);
    expect(tool.stdout).toMatch(/3 {2}PORTLEASE_EXHAUSTED/);
    for (const command of ['claim', 'release', 'list', 'reap', 'exec']) {
      const help = await runCli([command, '--help']);
      expect(help.code).toBe(0);
      expect(help.stdout).toMatch(new RegExp(`^Usage: portlease ${command}`));
      expect(help.stdout).toContain('--state-dir DIR');
      expect(help.stdout).toContain('4  PORTLEASE_LOCK_TIMEOUT');
    }
  });

  it('shows the help on stderr and exits 2 when run without a command', async () => {
    const result = await runCli([]);
    expect(result).toMatchObject({ code: 2, stdout: '' });
    expect(result.stderr).toContain('Usage: portlease COMMAND');
  });
});
