import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { canBind, freeRunBase, listen, close } from '../helpers/sockets.js';
import { stateTest } from '../helpers/state-dir.js';
import { isRunning, listClaims, runCli, waitFor } from './run-cli.js';
import { exited } from '../helpers/processes.js';

const it = stateTest;

describe('portlease claim', () => {
  it('prints consecutive ports, claimed for the calling process', async ({ stateDir }) => {
    const base = await freeRunBase(3);
    const result = await runCli([
      'claim',
      '--count',
      '3',
      '--base',
      String(base),
      '--host',
      '127.0.0.1',
      '--label',
      'e2e',
      '--state-dir',
      stateDir,
    ]);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(/^\d+ \d+ \d+\n$/);
    const ports = result.stdout.trim().split(' ').map(Number);
    expect(ports).toEqual([base, base + 1, base + 2]);
    for (const port of ports) expect(await canBind(port, '127.0.0.1')).toBe(true);

    const claims = await listClaims(stateDir);
    // The CLI has exited; its parent (this test process) owns the claim.
    expect(claims).toMatchObject([
      { ports, host: '127.0.0.1', pid: process.pid, status: 'live', live: true, label: 'e2e', expiresAt: null },
    ]);
  });

  it.skipIf(process.platform !== 'linux')('passes the probe options on: --exclude, --protocol, --allow-ephemeral', async ({ stateDir }) => {
    const base = await freeRunBase(6);
    const excluded = await runCli([
      'claim',
      '--count',
      '2',
      '--base',
      String(base),
      '--exclude',
      `${base}-${base + 2},${base + 4}`,
      '--state-dir',
      stateDir,
    ]);
    expect(excluded.stdout).toBe(`${base + 5} ${base + 6}\n`);
    const udp = await runCli([
      'claim',
      '--base',
      String(base),
      '--protocol',
      'both',
      '--exclude',
      `${base}-${base + 10}`,
      '--state-dir',
      stateDir,
    ]);
    expect(udp.code).toBe(0);
    const [first, last] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    const inside = await runCli(['claim', '--base', String(first! + 100), '--allow-ephemeral', '--state-dir', stateDir]);
    expect(Number(inside.stdout)).toBeLessThanOrEqual(last!);
    const skipped = await runCli(['claim', '--base', String(first! + 100), '--state-dir', stateDir]);
    expect(Number(skipped.stdout)).toBeGreaterThan(last!);
  });

  it('prints one JSON object with --json, and nothing else', async ({ stateDir }) => {
    const result = await runCli(['claim', '--count', '2', '--json', '--ttl', '30m', '--state-dir', stateDir]);
    expect(result.code).toBe(0);
    const printed = JSON.parse(result.stdout) as { ports: number[]; pid: number; host: string; label: null; expiresAt: string };
    expect(printed).toMatchObject({ pid: process.pid, host: '0.0.0.0', label: null });
    expect(printed.ports[1]).toBe(printed.ports[0]! + 1);
    const [listed] = await listClaims(stateDir);
    expect(printed.expiresAt).toBe(listed!.expiresAt);
    expect(Date.parse(printed.expiresAt) - Date.parse(listed!.createdAt)).toBe(30 * 60_000);
  });

  it('does not hand a claimed port out again', async ({ stateDir }) => {
    const base = await freeRunBase(4);
    const args = ['claim', '--count', '2', '--base', String(base), '--state-dir', stateDir];
    const first = await runCli(args);
    const second = await runCli(args);
    expect([first.stdout, second.stdout]).toEqual([`${base} ${base + 1}\n`, `${base + 2} ${base + 3}\n`]);
  });

  it('skips a port that some other program is listening on', async ({ stateDir }) => {
    const base = await freeRunBase(3);
    const blocker = await listen(base, '0.0.0.0');
    try {
      const result = await runCli(['claim', '--count', '2', '--base', String(base), '--state-dir', stateDir]);
      expect(result.stdout).toBe(`${base + 1} ${base + 2}\n`);
    } finally {
      await close(blocker);
    }
  });

  it('exits 3 with PORTLEASE_EXHAUSTED when no run fits', async ({ stateDir }) => {
    await runCli(['claim', '--base', '65535', '--host', '127.0.0.1', '--state-dir', stateDir]);
    // Whether 65535 is now claimed by us or was busy already, a second claim cannot fit.
    const result = await runCli(['claim', '--base', '65535', '--host', '127.0.0.1', '--state-dir', stateDir]);
    expect(result.code).toBe(3);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(/^portlease: PORTLEASE_EXHAUSTED: No run of 1 consecutive free port in 65535-65535.*--base.*\n$/);
    expect(result.stderr.split('\n')).toHaveLength(2);
  });

  it('exits 1 with PORTLEASE_OWNER_NOT_ALIVE for a --pid that is not running', async ({ stateDir }) => {
    const result = await runCli(['claim', '--pid', '999999999', '--state-dir', stateDir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^portlease: PORTLEASE_OWNER_NOT_ALIVE: .*999999999.*\n$/);
  });
});

describe('portlease release', () => {
  it('frees the given ports of the calling process, keeping the rest of the run', async ({ stateDir }) => {
    const claimed = await runCli(['claim', '--count', '3', '--state-dir', stateDir]);
    const ports = claimed.stdout.trim().split(' ').map(Number);
    const result = await runCli(['release', String(ports[0]), '--state-dir', stateDir]);
    expect(result).toMatchObject({ code: 0, stdout: `${ports[0]}\n` });
    expect((await listClaims(stateDir)).flatMap((claim) => claim.ports)).toEqual(ports.slice(1));
    const rest = await runCli(['release', '--json', '--state-dir', stateDir]);
    expect(JSON.parse(rest.stdout)).toEqual({ released: ports.slice(1) });
    expect(await listClaims(stateDir)).toEqual([]);
  });

  it('by default leaves claims of other owners alone; --pid and --label reach them', async ({ stateDir }) => {
    const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)'], { stdio: 'ignore' });
    try {
      const theirs = await runCli(['claim', '--pid', String(other.pid), '--label', 'theirs', '--state-dir', stateDir]);
      const labelled = await runCli(['claim', '--ttl', '5m', '--label', 'batch', '--state-dir', stateDir]);
      const mine = await runCli(['release', theirs.stdout.trim(), '--state-dir', stateDir]);
      expect(mine).toMatchObject({ code: 0, stdout: '' });
      expect(mine.stderr).toContain('nothing to release');
      expect(await listClaims(stateDir)).toHaveLength(2);

      expect((await runCli(['release', '--pid', String(other.pid), '--state-dir', stateDir])).stdout).toBe(theirs.stdout);
      expect((await runCli(['release', '--label', 'batch', '--state-dir', stateDir])).stdout).toBe(labelled.stdout);
      expect(await listClaims(stateDir)).toEqual([]);
    } finally {
      other.kill('SIGKILL');
    }
  });
});

describe('portlease list and reap', () => {
  it('shows a killed owner as dead, and reap removes its claim', async ({ stateDir }) => {
    const owner = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 20000)'], { stdio: 'ignore' });
    try {
      const claimed = await runCli(['claim', '--count', '2', '--pid', String(owner.pid), '--state-dir', stateDir]);
      expect(claimed.code).toBe(0);
      await runCli(['claim', '--state-dir', stateDir]); // a live claim of ours, which reap must keep
      expect((await listClaims(stateDir)).map((claim) => claim.status)).toEqual(['live', 'live']);

      owner.kill('SIGKILL');
      await exited(owner);
      await waitFor(() => !isRunning(owner.pid!), 'the owner to be gone');
      const listed = await listClaims(stateDir);
      expect(listed.find((claim) => claim.pid === owner.pid)).toMatchObject({ status: 'dead', live: false });

      const reaped = await runCli(['reap', '--state-dir', stateDir]);
      expect(reaped).toMatchObject({ code: 0, stdout: 'Reaped 1 claim.\n' });
      expect((await listClaims(stateDir)).map((claim) => claim.pid)).toEqual([process.pid]);
      expect(JSON.parse((await runCli(['reap', '--json', '--state-dir', stateDir])).stdout)).toEqual({ reaped: 0 });
    } finally {
      owner.kill('SIGKILL');
    }
  });

  it('marks a claim past its --ttl as expired', async ({ stateDir }) => {
    await runCli(['claim', '--ttl', '200ms', '--label', 'short', '--state-dir', stateDir]);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await listClaims(stateDir)).toMatchObject([{ status: 'expired', live: false, label: 'short' }]);
    expect((await runCli(['reap', '--state-dir', stateDir])).stdout).toBe('Reaped 1 claim.\n');
  });

  it('prints a table for people', async ({ stateDir }) => {
    const claimed = await runCli(['claim', '--count', '2', '--label', 'api', '--ttl', '1h', '--state-dir', stateDir]);
    const [first, second] = claimed.stdout.trim().split(' ');
    const result = await runCli(['list', '--state-dir', stateDir]);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^PORTS\s+HOST\s+PID\s+STATUS\s+LABEL\s+AGE\s+EXPIRES$/);
    expect(lines[1]).toMatch(new RegExp(`^${first}-${second}\\s+0\\.0\\.0\\.0\\s+${process.pid}\\s+live\\s+api\\s+\\d+s\\s+in 59m\\d+s$`));
    await runCli(['release', '--state-dir', stateDir]);
    expect((await runCli(['list', '--state-dir', stateDir])).stdout).toMatch(/^No claims in .*claims-.*\.jsonl\n/);
  });
});
