import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultOwner, isTransient, packageManagerOf, type ProcessEntry } from '../../src/cli/owner.js';
import { makeStateDir } from '../helpers.js';
import { repoDir, runBash } from './run-cli.js';

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

  it("skips npm itself, the sh -c of an exec-style npm, and forked subshells, but not a script's own shell", () => {
    const npmExec = entry(20, 10, ['npm', 'exec', 'portlease']);
    const npmRun = entry(21, 10, ['npm', 'run', 'ci']);
    const shell = entry(10, 5, ['bash', 'ci.sh']);
    expect(isTransient(npmExec, shell)).toBe(true);
    expect(isTransient(entry(30, 20, ['sh', '-c', 'portlease claim']), npmExec)).toBe(true);
    // The sh -c of `npm run` is the package.json script itself: it uses the ports.
    expect(isTransient(entry(31, 21, ['sh', '-c', 'P=$(portlease claim); vitest']), npmRun)).toBe(false);
    expect(isTransient(entry(11, 10, ['bash', 'ci.sh']), shell)).toBe(true);
    expect(isTransient(shell, entry(5, 1, ['sshd: runner']))).toBe(false);
  });

  it('walks up to the first lasting process and never into PID 1', () => {
    const table = new Map<number, ProcessEntry>([
      [40, entry(40, 30, ['sh', '-c', 'portlease claim'])],
      [30, entry(30, 20, ['npm', 'exec', 'portlease', 'claim'])],
      [20, entry(20, 1, ['bash', 'job.sh'])],
    ]);
    const read = (pid: number): ProcessEntry | undefined => table.get(pid);
    if (process.platform === 'linux') {
      expect(defaultOwner(40, read)).toBe(20);
      table.set(20, entry(20, 1, ['npm', 'exec', 'portlease']));
      expect(defaultOwner(40, read)).toBe(20); // not 1: a claim owned by init would never die
    }
    expect(defaultOwner(77, read)).toBe(77); // unreadable: the parent itself
  });
});

// The rule on real process trees: the claim must belong to the script's shell ($$).
describe.runIf(process.platform === 'linux')('the default owner from real shells', () => {
  let stateDir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir: stateDir, cleanup } = makeStateDir()));
  afterEach(() => cleanup());

  async function ownerAndShell(script: string): Promise<{ owner: number; shell: number }> {
    const result = await runBash(`${script}\necho "$$"`, { STATE_DIR: stateDir }, 30_000);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const [claims, shellPid] = result.stdout.trim().split('\n');
    const listed = JSON.parse(claims!) as { claims: Array<{ pid: number }> };
    expect(listed.claims).toHaveLength(1);
    return { owner: listed.claims[0]!.pid, shell: Number(shellPid) };
  }

  it('P=$(portlease claim): the script shell', async () => {
    const { owner, shell } = await ownerAndShell('P=$("$NODE" "$CLI" claim --state-dir "$STATE_DIR"); "$NODE" "$CLI" list --json --state-dir "$STATE_DIR"');
    expect(owner).toBe(shell);
  });

  it('P=$(portlease claim | tr ...): past the forked subshell of the pipeline', async () => {
    const { owner, shell } = await ownerAndShell(
      'P=$("$NODE" "$CLI" claim --count 2 --state-dir "$STATE_DIR" | tr " " ","); "$NODE" "$CLI" list --json --state-dir "$STATE_DIR"',
    );
    expect(owner).toBe(shell);
  });

  it('P=$(npm exec -- portlease claim): past npm exec and its sh -c', async () => {
    const { owner, shell } = await ownerAndShell(
      `cd '${repoDir}' && P=$(npm exec --offline --no-update-notifier -- node "$CLI" claim --state-dir "$STATE_DIR") && "$NODE" "$CLI" list --json --state-dir "$STATE_DIR"`,
    );
    expect(owner).toBe(shell);
  });

});
