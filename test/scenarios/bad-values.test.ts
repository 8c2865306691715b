// Bad values and odd places: a clear, typed answer at once, and nothing changed.
import { spawn } from 'node:child_process';
import { appendFileSync, readdirSync, readFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { listClaims, PortAllocator } from '../../src/index.js';
import { MAX_TTL_MS } from '../../src/options/options.js';
import { exited } from '../helpers/processes.js';
import { freeRunBase } from '../helpers/sockets.js';
import { stateTest, storedClaims } from '../helpers/state-dir.js';
import { cliPath, runCli } from '../cli/run-cli.js';

const it = stateTest;
const linux = process.platform === 'linux';

describe('time values a date cannot hold', () => {
  it('refuses a TTL past ten years in the library, naming the limit, and records nothing', async ({ stateDir }) => {
    const allocator = new PortAllocator({ stateDir });
    for (const ttlMs of [MAX_TTL_MS + 1, Number.MAX_SAFE_INTEGER]) {
      const error = await allocator.claim({ ttlMs }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(RangeError);
      expect((error as Error).message).toContain(`at most ${MAX_TTL_MS} (ten years)`);
    }
    const lease = await allocator.claim({ ttlMs: MAX_TTL_MS, base: await freeRunBase(2) });
    expect((await allocator.list())[0]!.expiresAt!.getTime()).toBeGreaterThan(Date.now());
    await lease.release();
    expect(storedClaims(allocator.stateFile)).toEqual([]);
  });

  it('refuses --ttl 104000000d with a usage error (exit 2), and list --json still parses', async ({ stateDir }) => {
    const refused = await runCli(['claim', '--ttl', '104000000d', '--state-dir', stateDir]);
    expect(refused.code).toBe(2);
    expect(refused.stdout).toBe('');
    expect(refused.stderr).toMatch(/^portlease: PORTLEASE_USAGE: Expected --ttl to be at most 3650d \(ten years\)/);
    const listed = await runCli(['list', '--json', '--state-dir', stateDir]);
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout).claims).toEqual([]);
  });

  it('sets aside a planted record whose times are not dates (1e400), and every listing still works', async ({ stateDir }) => {
    const allocator = new PortAllocator({ stateDir });
    const base = await freeRunBase(4);
    const lease = await allocator.claim({ base });
    // A change line that adds a record whose createdAt parses as Infinity, and one past the last date.
    const stateFile = allocator.stateFile;
    const header = JSON.parse(readFileSync(stateFile, 'utf8').split('\n')[0]!) as { gen: string };
    const lines = readFileSync(stateFile, 'utf8').split('\n').filter(Boolean).length - 1;
    const record = (id: string, time: string) =>
      `{"id":"${id}","start":${base + 2},"count":1,"host":"0.0.0.0","pid":${process.pid},"createdAt":${time}}`;
    appendFileSync(
      stateFile,
      `{"g":"${header.gen}","at":${lines},"w":"planted","add":[${record('inf', '1e400')},${record('far', '9e15')}],"drop":[]}\n`,
    );
    const claims = await listClaims({ stateDir, includeDead: true });
    expect(claims.map((claim) => claim.ports)).toEqual([[base]]);
    for (const claim of claims) expect(Number.isNaN(claim.createdAt.getTime())).toBe(false);
    const listed = await runCli(['list', '--json', '--state-dir', stateDir]);
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout).claims).toHaveLength(1);
    expect((await runCli(['list', '--state-dir', stateDir])).stdout).not.toContain('NaN');
    await lease.release();
  });
});

describe.skipIf(!linux)(`a state directory under /proc${linux ? '' : ' (skipped: Linux only)'}`, () => {
  // Node 20's recursive mkdir loops forever there; run under `timeout` so that a regression ends.
  for (const [how, args, env] of [
    ['--state-dir /proc/x', ['claim', '--state-dir', '/proc/x'], {}],
    ['PORTLEASE_STATE_DIR=/proc/self/x', ['claim'], { PORTLEASE_STATE_DIR: '/proc/self/x' }],
  ] as const) {
    it(`${how}: fails at once with PORTLEASE_STATE_IO naming the directory, exit 1`, async () => {
      const child = spawn('timeout', ['-s', 'KILL', '20', process.execPath, cliPath, ...args], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, ...env },
      });
      const result = await exited(child, 30_000);
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(/^portlease: PORTLEASE_STATE_IO: Cannot create the state directory \/proc\/(self\/)?x/);
    });
  }

  it('the library throws the same typed error, and a SIGTERM would have been heard (the call returns)', async () => {
    const error = await new PortAllocator({ stateDir: '/proc/self/portlease' }).claim().catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'PORTLEASE_STATE_IO' });
  });
});

describe('mistakes get an answer about themselves', () => {
  it('an unknown option is a TypeError naming it and the closest known one; an allocator setting given to a claim says where it goes', async ({
    stateDir,
  }) => {
    const allocator = new PortAllocator({ stateDir });
    const typo = await allocator.claim({ cuont: 2 } as never).catch((caught: unknown) => caught);
    expect(typo).toBeInstanceOf(TypeError);
    expect((typo as Error).message).toMatch(/^Unknown claim option `cuont`\. Did you mean `count`\?/);
    const misplaced = await allocator.claim({ lockTimeoutMs: 5 } as never).catch((caught: unknown) => caught);
    expect((misplaced as Error).message).toContain('`lockTimeoutMs`: it is a setting of the allocator');
    expect(() => new PortAllocator({ stateDir, count: 2 } as never)).toThrow(
      /Unknown allocator option `count`: it is an option of a claim/,
    );
    expect(() => new PortAllocator({ statedir: stateDir } as never)).toThrow(/Did you mean `stateDir`\?/);
    expect(storedClaims(allocator.stateFile)).toEqual([]);
  });

  it('release(NaN) names NaN', async ({ allocator }) => {
    await expect(allocator.release(Number.NaN)).rejects.toThrow(/got NaN\.$/);
  });

  for (const [args, message] of [
    [['claim', '--count', '2', '--count', '3'], /--count is given more than once/],
    [['claim', '--count', '-2'], /Expected --count to be a whole number, got "-2" \(negative numbers are not allowed\)/],
    [['claim', '-n', '-1'], /Expected --count to be a whole number, got "-1"/],
    [['claim', '--label', '-x'], /The value of --label starts with '-': write it as --label=-x/],
    [['release', '--pid', '-5'], /Expected --pid to be a whole number, got "-5"/],
  ] as const) {
    it(`portlease ${args.join(' ')}: exit 2 with a message about the value, nothing claimed`, async ({ stateDir }) => {
      const result = await runCli([...args, '--state-dir', stateDir]);
      expect(result.code).toBe(2);
      expect(result.stdout).toBe('');
      expect(result.stderr).toMatch(message);
      expect(readdirSync(stateDir)).toEqual([]);
    });
  }
});
