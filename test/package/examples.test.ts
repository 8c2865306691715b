import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listClaims } from '../../src/index.js';
import { makeStateDir } from '../helpers/state-dir.js';
import { installPacked, type PackedInstall, prepareRecipe, run, runnerEnv, runToEnd } from './packed.js';

// Every recipe of examples/ run as its README says, with its real runner and the packed
// package, each with a state directory of its own. Ports are checked for what matters: every
// server listened on its port, and nothing stayed claimed afterwards.
// Each recipe starts a real runner with several workers: minutes, not seconds, on a loaded 2-core CI machine.
describe('the recipes in examples/', { timeout: 240_000 }, () => {
  let packed: PackedInstall;
  const states: Array<{ dir: string; cleanup: () => void }> = [];
  const stateDir = (): string => {
    const state = makeStateDir();
    states.push(state);
    return state.dir;
  };

  beforeAll(async () => {
    packed = await installPacked();
  }, 180_000);
  afterAll(() => {
    packed?.cleanup();
    for (const state of states) state.cleanup();
  });

  async function npmTest(recipe: string, runners: string[], script = 'test') {
    const dir = prepareRecipe(packed, recipe, runners);
    const state = stateDir();
    const result = await run('npm', ['run', '--silent', script], { cwd: dir, env: runnerEnv(state) });
    return { ...result, output: result.stdout + result.stderr, state };
  }

  /** No claim left behind: none at all, or with `deadAllowed`, none still live (dead ones are reaped by the next search). */
  async function noClaimsLeft(state: string, deadAllowed = false): Promise<void> {
    const left = await listClaims({ stateDir: state, includeDead: true });
    expect(left.filter((claim) => claim.live || !deadAllowed).map((claim) => claim.label)).toEqual([]);
  }

  it('node:test with --test-concurrency=4: a claim per test file', async () => {
    const { output, state } = await npmTest('node-test', []);
    expect(output).toMatch(/# pass 4\b/);
    const ports = [...output.matchAll(/served on (\d+)/g)].map((match) => match[1]);
    expect(new Set(ports).size).toBe(4);
    await noClaimsLeft(state);
  });

  it('vitest: globalSetup with provide/inject, a claim per file, a port block per worker', async () => {
    const { output, state } = await npmTest('vitest', ['vitest']);
    expect(output).toMatch(/Test Files\s+5 passed/);
    expect(output).toMatch(/Tests\s+8 passed/);
    // Files of one worker share its block; two workers never share a port.
    const blocks = new Map<string, string>();
    const reports = [...output.matchAll(/worker (\d+) block ([\d ]+)/g)];
    expect(reports).toHaveLength(3);
    for (const [, pid, ports] of reports) {
      expect(blocks.get(pid!) ?? ports).toBe(ports);
      blocks.set(pid!, ports!);
    }
    // Two workers for three files: one worker ran two files with one block.
    expect(blocks.size).toBeLessThan(reports.length);
    const all = [...blocks.values()].flatMap((ports) => ports.split(' '));
    expect(new Set(all).size).toBe(all.length);
    // vitest stops its worker processes with a signal, so their blocks are not given back
    // at exit: they are left dead, for the next claim to reap.
    await noClaimsLeft(state, true);
  });

  it('jest in CommonJS mode, no flags: globalSetup/globalTeardown and per-test claims, 4 workers', async () => {
    const { output, state } = await npmTest('jest', ['jest']);
    expect(output).toMatch(/Tests:\s+8 passed, 8 total/);
    const workers = new Set([...output.matchAll(/worker (\d+) \(pid/g)].map((match) => match[1]));
    expect(workers.size).toBeGreaterThan(1);
    await noClaimsLeft(state);
  });

  it('Playwright: one claim in the runner, seen by every worker and by webServer', async () => {
    const { output, state } = await npmTest('playwright', ['@playwright/test']);
    expect(output).toMatch(/5 passed/);
    const seen = [...output.matchAll(/uses port (\d+) claimed by pid (\d+)/g)];
    expect(seen.length).toBeGreaterThan(0);
    await noClaimsLeft(state);
  });

  it('Playwright in a CommonJS project: the port from `portlease exec`, seen by every worker and by webServer', async () => {
    const { output, state } = await npmTest('playwright-cjs', ['@playwright/test']);
    expect(output).toMatch(/3 passed/);
    const ports = new Set([...output.matchAll(/uses port (\d+)/g)].map((match) => match[1]));
    expect(ports.size).toBe(1);
    await noClaimsLeft(state);
  });

  it('a shell CI job: parallel jobs get disjoint ports, and failure exit codes survive', async () => {
    const dir = prepareRecipe(packed, 'shell-ci', []);
    const state = stateDir();
    const job = (id: string, extra: Record<string, string> = {}) =>
      runToEnd('npm', ['run', '--silent', 'ci'], { cwd: dir, env: runnerEnv(state, { CI_JOB_ID: id, ...extra }) });
    const jobs = await Promise.all(['1', '2', '3', '4'].map((id) => job(id)));
    for (const result of jobs) expect(result.code, result.stderr).toBe(0);
    const ports = jobs.flatMap((result) => [...result.stdout.matchAll(/(?:api|db|metrics) (\d+)/g)].map((match) => match[1]));
    expect(ports).toHaveLength(12);
    expect(new Set(ports).size).toBe(12);
    await noClaimsLeft(state);

    // Exit 3: every port from the base up is claimed by someone else.
    await run(join(dir, 'node_modules', '.bin', 'portlease'), ['claim', '--base', '65533', '--count', '3', '--ttl', '1m'], {
      cwd: dir,
      env: runnerEnv(state),
    });
    const exhausted = await job('5', { BASE_PORT: '65533' });
    expect(exhausted.stderr).toContain('PORTLEASE_EXHAUSTED');
    expect(exhausted.code).toBe(3);
    // Exit 2: a base whose run of 3 would pass 65535 is bad usage.
    const usage = await job('6', { BASE_PORT: '65535' });
    expect(usage.code).toBe(2);
  });
});
