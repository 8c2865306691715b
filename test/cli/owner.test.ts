import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { defaultOwner, defaultOwners, isBackgroundJob, isTransient, packageManagerOf, type ProcessEntry } from '../../src/cli/owner.js';
import { stateTest } from '../helpers/state-dir.js';
import { repoDir, runBash } from './run-cli.js';

const it = stateTest;

function entry(pid: number, ppid: number, argv: string[]): ProcessEntry {
  return { pid, ppid, argv };
}

describe('which processes the owner rule walks past', () => {
  it('recognises package managers and whether they run a bin for the caller', () => {
    expect(packageManagerOf(['npm', 'exec', 'portlease', 'claim'])).toEqual({ execStyle: true });
    expect(packageManagerOf(['/usr/bin/node', '/usr/lib/node_modules/npm/bin/npx-cli.js', 'portlease'])).toEqual({ execStyle: true });
    expect(packageManagerOf(['node', '/usr/local/bin/pnpm', 'dlx', 'portlease'])).toEqual({ execStyle: true });
    expect(packageManagerOf(['npm', 'run', 'test'])).toEqual({ execStyle: false });
    expect(packageManagerOf(['node', 'server.js'])).toBeUndefined();
    expect(packageManagerOf(['bash', '-c', 'npm exec x'])).toBeUndefined();
  });

  it('skips npm, wrappers and shells their parent waits for, but not a script or a background job', () => {
    const npmExec = entry(20, 10, ['npm', 'exec', 'portlease']);
    const npmRun = entry(21, 10, ['npm', 'run', 'ci']);
    const shell = entry(10, 5, ['bash', 'ci.sh']);
    expect(isTransient(npmExec, shell)).toBe(true);
    expect(isTransient(entry(30, 20, ['sh', '-c', 'portlease claim']), npmExec)).toBe(true);
    // Deliberately changed: the sh -c of `npm run` is passed too, as npm waits for it (longer-lived).
    expect(isTransient(entry(31, 21, ['sh', '-c', 'cd x && portlease claim > port; vitest']), npmRun)).toBe(true);
    expect(isTransient(entry(11, 10, ['bash', 'ci.sh']), shell)).toBe(true);
    expect(isTransient(shell, entry(5, 1, ['sshd: runner']))).toBe(false);
    expect(isTransient(entry(12, 10, ['timeout', '30', 'node', 'cli.js']), shell)).toBe(true);
    expect(isTransient(entry(13, 10, ['/usr/bin/perl', '/usr/bin/parallel', 'x']), shell)).toBe(true);
    expect(isTransient(entry(14, 10, ['node', 'server.js']), shell)).toBe(false);
  });

  it('stops at a background job: `( ... ) &` without job control, or a group of its own', () => {
    const script = { ...entry(10, 5, ['bash', 'ci.sh']), pgid: 10, tpgid: -1, ignoresSigint: false };
    const job = { ...entry(11, 10, ['bash', 'ci.sh']), pgid: 10, tpgid: -1, ignoresSigint: true };
    expect(isBackgroundJob(job, script)).toBe(true);
    expect(isTransient(job, script)).toBe(false);
    // A subshell inside the job inherits the ignored SIGINT: the job waits for it.
    const inner = { ...entry(12, 11, ['bash', 'ci.sh']), pgid: 10, tpgid: -1, ignoresSigint: true };
    expect(isTransient(inner, job)).toBe(true);
    // Under job control: its own group, not the terminal's foreground one.
    const detached = { ...entry(13, 10, ['sh', '-c', 'a; b']), pgid: 13, tpgid: 10, ignoresSigint: false };
    expect(isTransient(detached, script)).toBe(false);
    expect(isTransient({ ...detached, tpgid: 13 }, script)).toBe(true);
    // A wrapper in the background is passed when it only runs the CLI, not when it runs a shell that goes on.
    const timeout = { ...entry(14, 10, ['timeout', '30', 'sh', '-c', 'a; b']), pgid: 14, tpgid: -1, ignoresSigint: true };
    expect(isTransient(timeout, script, true)).toBe(true);
    expect(isTransient(timeout, script, false)).toBe(false);
  });

  it('takes the nearest ancestor that reads the output pipe, through unknown wrappers', () => {
    const table = new Map<number, ProcessEntry>([
      [50, entry(50, 40, ['uv', 'run', 'portlease', 'claim'])],
      [40, { ...entry(40, 30, ['bash', 'job.sh']), ignoresSigint: true, readEnds: ['pipe:[7]'] }],
      [30, { ...entry(30, 20, ['bash', 'job.sh']), readEnds: ['pipe:[7]'] }],
      [20, entry(20, 1, ['sshd: runner'])],
    ]);
    const read = (pid: number): ProcessEntry | undefined => table.get(pid);
    if (process.platform !== 'linux') return;
    expect(defaultOwner(50, read, 'pipe:[7]')).toBe(40);
    expect(defaultOwner(50, read, 'pipe:[8]')).toBe(50); // nobody reads it: an unknown program stops the walk
    expect(defaultOwner(50, read, undefined)).toBe(50);
  });

  it('walks up to the first lasting process and never into PID 1', () => {
    const table = new Map<number, ProcessEntry>([
      [40, entry(40, 30, ['sh', '-c', 'portlease claim'])],
      [30, entry(30, 20, ['npm', 'exec', 'portlease', 'claim'])],
      [20, entry(20, 1, ['bash', 'job.sh'])],
    ]);
    const read = (pid: number): ProcessEntry | undefined => table.get(pid);
    if (process.platform === 'linux') {
      expect(defaultOwner(40, read, undefined)).toBe(20);
      table.set(20, entry(20, 1, ['npm', 'exec', 'portlease']));
      expect(defaultOwner(40, read, undefined)).toBe(20); // not 1: a claim owned by init would never die
    }
    expect(defaultOwner(77, read, undefined)).toBe(77); // unreadable: the parent itself
    // ppid 0: the parent is outside our PID namespace; PID 1 of ours (a container's init) owns it.
    if (process.pid !== 1) expect(defaultOwner(0, read, undefined)).toBe(1);
  });

  it("pairs a bare release with the claim of the same command string, and never reaches another job's", () => {
    // node -> bash -c 'P=$(portlease claim); ...; portlease release': the claim's output is
    // read by the bash -c; the release's output is not, so its walk passes the bash -c.
    const table = new Map<number, ProcessEntry>([
      [40, { ...entry(40, 30, ['bash', '-c', 'P=$(portlease claim); portlease release']), readEnds: ['pipe:[9]'] }],
      [30, entry(30, 20, ['node', 'runner.js'])],
      [20, entry(20, 1, ['bash', 'ci.sh'])],
      // A background job of the same runner, with a claim of its own.
      [45, { ...entry(45, 30, ['bash', '-c', 'P=$(portlease claim); sleep 60']), ignoresSigint: true }],
    ]);
    const read = (pid: number): ProcessEntry | undefined => table.get(pid);
    if (process.platform !== 'linux') return;
    expect(defaultOwner(40, read, 'pipe:[9]')).toBe(40); // the claim
    expect(defaultOwner(40, read, undefined)).toBe(30); // the release's own owner...
    expect(defaultOwners(40, read, undefined)).toEqual([40, 30]); // ...and what it gives back
    expect(defaultOwners(45, read, undefined)).toEqual([45]); // the background job: only its own
  });
});

// The rule on real process trees: the claim must belong to the script's shell ($$).
describe.runIf(process.platform === 'linux')('the default owner from real shells', () => {
  async function ownerAndShell(stateDir: string, script: string): Promise<{ owner: number; shell: number }> {
    // A script file, as in CI: a `bash -c` string would itself be passed, its parent waiting for it.
    const file = join(stateDir, 'job.sh');
    writeFileSync(file, `${script}\necho "$$"\n`);
    const result = await runBash(`exec bash '${file}'`, { STATE_DIR: stateDir }, 30_000);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const [claims, shellPid] = result.stdout.trim().split('\n');
    const listed = JSON.parse(claims!) as { claims: Array<{ pid: number }> };
    expect(listed.claims).toHaveLength(1);
    return { owner: listed.claims[0]!.pid, shell: Number(shellPid) };
  }

  it('P=$(portlease claim): the script shell', async ({ stateDir }) => {
    const { owner, shell } = await ownerAndShell(
      stateDir,
      'P=$("$NODE" "$CLI" claim --state-dir "$STATE_DIR"); "$NODE" "$CLI" list --json --state-dir "$STATE_DIR"',
    );
    expect(owner).toBe(shell);
  });

  it('P=$(portlease claim | tr ...): past the forked subshell of the pipeline', async ({ stateDir }) => {
    const { owner, shell } = await ownerAndShell(
      stateDir,
      'P=$("$NODE" "$CLI" claim --count 2 --state-dir "$STATE_DIR" | tr " " ","); "$NODE" "$CLI" list --json --state-dir "$STATE_DIR"',
    );
    expect(owner).toBe(shell);
  });

  it('P=$(npm exec -- portlease claim): past npm exec and its sh -c', async ({ stateDir }) => {
    const { owner, shell } = await ownerAndShell(
      stateDir,
      `cd '${repoDir}' && P=$(npm exec --offline --no-update-notifier -- node "$CLI" claim --state-dir "$STATE_DIR") && "$NODE" "$CLI" list --json --state-dir "$STATE_DIR"`,
    );
    expect(owner).toBe(shell);
  });
});
