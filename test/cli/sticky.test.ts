import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { freeRunBase } from '../helpers/sockets.js';
import { snapshotDir, stateTest } from '../helpers/state-dir.js';
import { runCli, startCli } from './run-cli.js';
import { exited } from '../helpers/processes.js';

const it = stateTest;

/** Runs `exec ...args -- node -e 'print PORT'` in its own process and returns the port it got. */
async function execPort(stateDir: string, args: string[]): Promise<number> {
  const result = await exited(
    startCli(['exec', '--state-dir', stateDir, ...args, '--', process.execPath, '-e', 'console.log(process.env.PORT)']),
  );
  expect(result).toMatchObject({ code: 0, stderr: '' });
  return Number(result.stdout.trim());
}

interface ListedSticky {
  label: string;
  ports: number[];
  usedAt: string;
}

async function listed(stateDir: string): Promise<{ claims: Array<{ ports: number[]; label: string | null }>; sticky: ListedSticky[] }> {
  return JSON.parse((await runCli(['list', '--json', '--state-dir', stateDir])).stdout) as never;
}

describe('--sticky', () => {
  it('gives a label the ports it held last, across a release and a claim from another process', async ({ stateDir }) => {
    const base = await freeRunBase(6);
    // First run: the label gets base+2 (base and base+1 left alone by --base).
    const first = await runCli(['claim', '--sticky', '--label', 'web', '-n', '2', '--base', String(base + 2), '--state-dir', stateDir]);
    expect(first).toMatchObject({ code: 0, stdout: `${base + 2} ${base + 3}\n` });
    expect((await listed(stateDir)).sticky).toMatchObject([{ label: 'web', ports: [base + 2, base + 3] }]);
    expect((await runCli(['release', '--label', 'web', '--state-dir', stateDir])).code).toBe(0);
    expect((await listed(stateDir)).claims).toEqual([]);

    // Another process, another base: without --sticky it gets base, with it the same ports again.
    expect(await execPort(stateDir, ['--base', String(base), '-n', '2'])).toBe(base);
    expect(await execPort(stateDir, ['--sticky', '--label', 'web', '--base', String(base), '-n', '2'])).toBe(base + 2);
    // The memory lives in a file of its own: losing every claim (the state file removed) leaves it.
    for (const name of readdirSync(stateDir)) if (name.startsWith('claims-')) rmSync(join(stateDir, name));
    expect(await execPort(stateDir, ['--sticky', '--label', 'web', '--base', String(base), '-n', '2'])).toBe(base + 2);

    const text = (await runCli(['list', '--state-dir', stateDir])).stdout;
    expect(text).toMatch(new RegExp(`Sticky ports:\\nLABEL +PORTS +LAST USED\\nweb +${base + 2}-${base + 3} +\\d+[a-z]+ ago\\n$`));
  });

  it('falls back to the usual search when the remembered ports are taken, and remembers the new ones', async ({ stateDir }) => {
    const base = await freeRunBase(6);
    expect((await runCli(['claim', '--sticky', '--label', 'api', '--base', String(base + 3), '--state-dir', stateDir])).stdout).toBe(
      `${base + 3}\n`,
    );
    await runCli(['release', '--label', 'api', '--state-dir', stateDir]);
    // Someone else holds base+3 now.
    expect((await runCli(['claim', '--base', String(base + 3), '--ttl', '1m', '--state-dir', stateDir])).stdout).toBe(`${base + 3}\n`);
    expect(await execPort(stateDir, ['--sticky', '--label', 'api', '--base', String(base)])).toBe(base);
    expect((await listed(stateDir)).sticky).toMatchObject([{ label: 'api', ports: [base] }]);
  });

  it('ignores a remembered run outside --base..--max', async ({ stateDir }) => {
    const base = await freeRunBase(6);
    await runCli(['claim', '--sticky', '--label', 'db', '--base', String(base + 4), '--state-dir', stateDir]);
    await runCli(['release', '--label', 'db', '--state-dir', stateDir]);
    expect(await execPort(stateDir, ['--sticky', '--label', 'db', '--base', String(base), '--max', String(base + 2)])).toBe(base);
  });

  it('needs --label: a usage error that changes nothing', async ({ stateDir }) => {
    const before = snapshotDir(stateDir);
    const result = await runCli(['claim', '--sticky', '--state-dir', stateDir]);
    expect(result).toMatchObject({ code: 2, stdout: '' });
    expect(result.stderr).toContain('`label` with `sticky: true`');
    expect(snapshotDir(stateDir)).toEqual(before);
  });
});
