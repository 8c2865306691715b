import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { exited, fixturesDir, forkFixture, nextMessage } from '../../helpers/processes.js';
import { canBind, freeRunBase } from '../../helpers/sockets.js';
import { makeStateDir } from '../../helpers/state-dir.js';
import { cliPath, listClaims, startCli, waitFor } from '../run-cli.js';

let stateDir: string;
let cleanup: () => void;
let goDir: string;
const children: ChildProcess[] = [];
const strays: number[] = [];
beforeEach(() => {
  ({ dir: stateDir, cleanup } = makeStateDir());
  goDir = mkdtempSync(join(tmpdir(), 'portlease-go-'));
});
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  for (const pid of strays.splice(0)) if (isLive(pid)) process.kill(pid, 'SIGKILL');
  cleanup();
  rmSync(goDir, { recursive: true, force: true });
});

/**
 * Whether `pid` runs and is not a zombie. Orphans are reparented to PID 1, and a container
 * init that never reaps leaves them as zombies, which `kill(pid, 0)` still finds.
 */
function isLive(pid: number): boolean {
  if (existsSync('/proc/self/stat')) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2));
    } catch {
      return false;
    }
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const SERVER = join(fixturesDir, 'group-server.mjs');
const hasNpm = spawnSync('npm', ['--version'], { stdio: 'ignore', timeout: 20_000 }).status === 0;

/** `sh -c` that starts two group servers in the background and waits for them. */
function twoServers(mode: 'linger' | 'stubborn'): string[] {
  const go = join(goDir, 'go');
  const one = (placeholder: string) => `"$0" "$1" ${placeholder} ${mode} "$2" &`;
  return ['sh', '-c', `${one('{PORT_0}')} ${one('{PORT_1}')} wait`, process.execPath, SERVER, go];
}

/** Collects stdout lines of `child`; `waitLines` resolves when `count` lines match `pattern`. */
function lines(child: ChildProcess): (pattern: RegExp, count: number) => Promise<string[]> {
  let seen = '';
  child.stdout!.on('data', (chunk: Buffer) => (seen += chunk.toString()));
  return async (pattern, count) => {
    let found: string[] = [];
    await waitFor(
      () => (found = seen.split('\n').filter((text) => pattern.test(text))).length >= count,
      `${count} lines ${pattern}`,
      15_000,
    );
    return found;
  };
}

describe('portlease exec process groups', () => {
  it.skipIf(process.platform === 'win32')(
    'SIGTERM reaches every process the command started; the claim outlives them, then goes',
    async () => {
      const base = await freeRunBase(2);
      const exec = startCli([
        'exec',
        '--state-dir',
        stateDir,
        '--count',
        '2',
        '--base',
        String(base),
        '--host',
        '127.0.0.1',
        '--',
        ...twoServers('linger'),
      ]);
      children.push(exec);
      const waitLines = lines(exec);
      const done = exited(exec);
      const servers = (await waitLines(/^listening /, 2)).map((text) => Number(text.split(' ')[2]));
      strays.push(...servers);
      expect(servers.every(isLive)).toBe(true);

      exec.kill('SIGTERM');
      // Both servers got the signal (it went to the group, not just to sh) and linger on.
      await waitLines(/^stopping /, 2);
      // sh dies of the signal; the claim portlease exec shares stays live, with no gap between.
      await waitFor(
        async () => (await listClaims(stateDir)).some((claim) => claim.pid !== exec.pid && claim.status === 'dead'),
        "the command's own claim to die with sh",
      );
      expect(await listClaims(stateDir)).toContainEqual(
        expect.objectContaining({ ports: [base, base + 1], pid: exec.pid, status: 'live' }),
      );
      expect(servers.every(isLive)).toBe(true);

      writeFileSync(join(goDir, 'go'), '');
      const result = await done;
      expect(result.code).toBe(143);
      expect(servers.some(isLive)).toBe(false);
      expect(await listClaims(stateDir)).toEqual([]);
      expect(await canBind(base, '127.0.0.1')).toBe(true);
      expect(await canBind(base + 1, '127.0.0.1')).toBe(true);
    },
    30_000,
  );

  it.skipIf(process.platform === 'win32')('escalates to SIGKILL after --kill-after when the group ignores the signal', async () => {
    const exec = startCli([
      'exec',
      '--state-dir',
      stateDir,
      '--count',
      '2',
      '--host',
      '127.0.0.1',
      '--kill-after',
      '300ms',
      '--',
      ...twoServers('stubborn'),
    ]);
    children.push(exec);
    const waitLines = lines(exec);
    const done = exited(exec);
    const servers = (await waitLines(/^listening /, 2)).map((text) => Number(text.split(' ')[2]));
    strays.push(...servers);
    exec.kill('SIGTERM');
    await waitLines(/^stopping /, 2);
    const result = await done;
    expect(result.code).toBe(143);
    expect(servers.some(isLive)).toBe(false);
    expect(await listClaims(stateDir)).toEqual([]);
  });

  it.skipIf(process.platform === 'win32')(
    'a command that exits while what it started has not bound yet: its ports stay claimed, with no gap, even while the lock is busy',
    async () => {
      const base = await freeRunBase(3);
      const go = join(goDir, 'go');
      const exitNow = join(goDir, 'exit-now');
      // sh starts a server that binds only once told to, and exits when told to.
      const exec = startCli([
        'exec',
        '--state-dir',
        stateDir,
        '--base',
        String(base),
        '--host',
        '127.0.0.1',
        '--',
        'sh',
        '-c',
        `"$0" "$1" {PORT} late "$2" & echo "sh $$"; while [ ! -e "$3" ]; do sleep 0.05; done; exit 0`,
        process.execPath,
        SERVER,
        go,
        exitNow,
      ]);
      children.push(exec);
      const waitLines = lines(exec);
      const done = exited(exec, 30_000);
      const shPid = Number((await waitLines(/^sh \d+$/, 1))[0]!.split(' ')[1]);
      // Another process holds the lock when sh exits: nothing can be handed over meanwhile.
      const holder = forkFixture('hold-lock.mjs', [stateDir]);
      children.push(holder);
      expect(await nextMessage(holder)).toEqual({ locked: true });
      writeFileSync(exitNow, '');
      await waitFor(() => !isLive(shPid), 'sh to exit');
      await new Promise((resolve) => setTimeout(resolve, 300));
      // A claim of the command's PID alone would be dead now, and the next search would take it.
      const claims = await listClaims(stateDir);
      expect(claims).toContainEqual(expect.objectContaining({ ports: [base], status: 'live' }));
      holder.kill('SIGKILL');
      await exited(holder);
      writeFileSync(go, '');
      const [listening] = await waitLines(/^listening /, 1);
      expect(Number(listening!.split(' ')[1])).toBe(base);
      expect((await done).code).toBe(0);
      expect(await listClaims(stateDir)).toEqual([]);
    },
  );

  it.skipIf(process.platform === 'win32').each([
    ['its parent', false],
    // npm runs a bin through `sh -c`; SIGKILLed, npm leaves that shell waiting on.
    ['the npm-like process above its `sh -c`', true],
  ])('stops the group and releases when %s is SIGKILLed (npx, npm exec)', async (_, throughShell) => {
    // A real intermediate process in the place of npm: it runs exec (through sh -c) and waits.
    const execArgs = [cliPath, 'exec', '--state-dir', stateDir, '--host', '127.0.0.1', '--', process.execPath, SERVER, '{PORT}', 'plain'];
    const command = throughShell ? ['sh', '-c', '"$0" "$@"; exit $?', process.execPath, ...execArgs] : [process.execPath, ...execArgs];
    const parent = spawn(
      process.execPath,
      [
        '-e',
        `const child = require('node:child_process').spawn(process.argv[1], process.argv.slice(2), { stdio: ['ignore', 'inherit', 'inherit'] });
         console.log('child ' + child.pid); setTimeout(() => {}, 20000);`,
        ...command,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(parent);
    const waitLines = lines(parent);
    const childPid = Number((await waitLines(/^child \d+$/, 1))[0]!.split(' ')[1]);
    const [listening] = await waitLines(/^listening /, 1);
    const [, port, server, execPid] = listening!.split(' ').map(Number);
    strays.push(childPid, execPid!, server!);
    expect(execPid === childPid).toBe(!throughShell);
    expect(await listClaims(stateDir)).toContainEqual(expect.objectContaining({ ports: [port], pid: server, status: 'live' }));

    parent.kill('SIGKILL');
    await exited(parent);
    await waitFor(() => !isLive(server!) && !isLive(execPid!), 'the server and portlease exec to be gone', 15_000);
    expect(await listClaims(stateDir)).toEqual([]);
    expect(await canBind(port!, '127.0.0.1')).toBe(true);
  });

  it.skipIf(process.platform === 'win32' || !hasNpm)('stops when a real npm exec above it is SIGKILLed', async () => {
    const npm = spawn(
      'npm',
      [
        'exec',
        '--offline',
        '--no-update-notifier',
        '--',
        process.execPath,
        cliPath,
        'exec',
        '--state-dir',
        stateDir,
        '--host',
        '127.0.0.1',
        '--',
        process.execPath,
        SERVER,
        '{PORT}',
        'plain',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(npm);
    const waitLines = lines(npm);
    const [listening] = await waitLines(/^listening /, 1);
    const [, port, server, execPid] = listening!.split(' ').map(Number);
    strays.push(execPid!, server!);
    expect(await listClaims(stateDir)).toContainEqual(expect.objectContaining({ ports: [port], pid: server, status: 'live' }));
    npm.kill('SIGKILL');
    await exited(npm);
    await waitFor(() => !isLive(server!) && !isLive(execPid!), 'the server and portlease exec to be gone', 15_000);
    expect(await listClaims(stateDir)).toEqual([]);
  });

  it.skipIf(process.platform !== 'linux')('keeps running a background exec whose shell has exited: ( portlease exec ... & )', async () => {
    const shell = spawn(
      'sh',
      [
        '-c',
        '"$0" "$@" > /dev/null 2>&1 & echo $!',
        process.execPath,
        cliPath,
        'exec',
        '--state-dir',
        stateDir,
        '--host',
        '127.0.0.1',
        '--',
        process.execPath,
        SERVER,
        '{PORT}',
        'plain',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const execPid = Number((await exited(shell)).stdout.trim());
    strays.push(execPid);
    // Two owners of one run: the command, and portlease exec sharing it.
    await waitFor(async () => (await listClaims(stateDir)).length === 2, 'the claim');
    const claim = (await listClaims(stateDir)).find((listed) => listed.pid !== execPid);
    strays.push(claim!.pid);
    // Reparented, and checked twice a second: a few checks later it still serves.
    await new Promise((resolve) => setTimeout(resolve, 1500));
    expect(isLive(execPid)).toBe(true);
    const claims = await listClaims(stateDir);
    expect(claims).toContainEqual(expect.objectContaining({ pid: claim!.pid, status: 'live' }));
    expect(claims).toContainEqual(expect.objectContaining({ pid: execPid, status: 'live' }));
    process.kill(execPid, 'SIGTERM');
    await waitFor(() => !isLive(execPid), 'portlease exec to end on SIGTERM');
    expect(await listClaims(stateDir)).toEqual([]);
  });
});
