import { describe, expect } from 'vitest';
import { freeRunBase } from '../helpers/sockets.js';
import { snapshotDir, stateTest } from '../helpers/state-dir.js';
import { type ListedClaim, runBash, runCli } from './run-cli.js';

const it = stateTest;

describe('portlease claim --format and --names', () => {
  it('prints NAME=port lines that a shell can eval; the claim belongs to that shell', async ({ stateDir }) => {
    const base = await freeRunBase(3);
    // Through a real `sh -c`: eval the output, use the variables, and list while the shell still runs.
    const result = await runBash(
      `sh -c 'eval "$("$NODE" "$CLI" claim --format env --names api,db,metrics --base ${base} --state-dir "$1")" || exit 9
        echo "$API_PORT $DB_PORT $METRICS_PORT $PORT $PORT_2 pid=$$"
        "$NODE" "$CLI" list --json --state-dir "$1"' sh "${stateDir}"`,
    );
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const [first, listing] = result.stdout.split('\n', 2) as [string, string];
    const pid = Number(/pid=(\d+)/.exec(first)![1]);
    expect(first).toBe(`${base} ${base + 1} ${base + 2} ${base} ${base + 2} pid=${pid}`);
    expect((JSON.parse(listing) as { claims: ListedClaim[] }).claims).toMatchObject([
      { ports: [base, base + 1, base + 2], pid, status: 'live' },
    ]);
  });

  it('prints only one-port variables, behind --prefix', async ({ stateDir }) => {
    const base = await freeRunBase(2);
    const result = await runCli([
      'claim',
      '--format',
      'env',
      '--count',
      '2',
      '--prefix',
      'E2E_',
      '--base',
      String(base),
      '--state-dir',
      stateDir,
    ]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toBe(`E2E_PORT=${base}\nE2E_PORT_0=${base}\nE2E_PORT_1=${base + 1}\n`);
  });

  it('keeps --format json (and --json), with the names', async ({ stateDir }) => {
    const base = await freeRunBase(2);
    const named = await runCli(['claim', '--format', 'json', '--names', 'web,db', '--base', String(base), '--state-dir', stateDir]);
    expect(named).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(named.stdout)).toEqual({
      ports: [base, base + 1],
      host: '0.0.0.0',
      pid: process.pid,
      label: null,
      expiresAt: null,
      names: { web: base, db: base + 1 },
    });
    const plain = await runCli(['claim', '--json', '--base', String(base), '--state-dir', stateDir]);
    expect(JSON.parse(plain.stdout)).toMatchObject({ ports: [expect.any(Number)], label: null });
    expect(JSON.parse(plain.stdout)).not.toHaveProperty('names');
  });

  it.for<[string[], RegExp]>([
    [['--format', 'yaml'], /Expected --format to be plain, env or json, got "yaml"/],
    [['--json', '--format', 'env'], /--json and --format env contradict/],
    [['--names', 'a-b'], /Expected --names .*"a-b"/],
    [['--names', 'db,DB'], /--names has "DB" twice/],
    [['--names', 'a,b', '-n', '1'], /--count 1 does not match the 2 names/],
    [['--prefix', '1X'], /Expected --prefix/],
  ])('refuses %j with a usage error and changes nothing', async ([args, message], { stateDir }) => {
    const before = snapshotDir(stateDir);
    const result = await runCli(['claim', ...args, '--state-dir', stateDir]);
    expect(result).toMatchObject({ code: 2, stdout: '' });
    expect(result.stderr).toMatch(message);
    expect(snapshotDir(stateDir)).toEqual(before);
  });
});
