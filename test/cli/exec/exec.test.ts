import { type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';
import { afterEach, describe, expect } from 'vitest';
import { exited } from '../../helpers/processes.js';
import { freeRunBase } from '../../helpers/sockets.js';
import { stateTest } from '../../helpers/state-dir.js';
import { cliPath, isRunning, listClaims, startCli, waitFor } from '../run-cli.js';

const it = stateTest;

const children: ChildProcess[] = [];
const strays: number[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  for (const pid of strays.splice(0)) if (isRunning(pid)) process.kill(pid, 'SIGKILL');
});

function exec(stateDir: string, args: string[], command: string[]): ChildProcess {
  const child = startCli(['exec', '--state-dir', stateDir, ...args, '--', ...command]);
  children.push(child);
  return child;
}

/** Resolves with the first line `child` prints on stdout that matches `pattern`. */
function line(child: ChildProcess, pattern: RegExp, timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; got ${JSON.stringify(seen)}`)),
      timeoutMs,
    );
    child.stdout!.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      const match = seen.split('\n').find((text) => pattern.test(text));
      if (match !== undefined) {
        clearTimeout(timer);
        resolve(match);
      }
    });
  });
}

// Every command exits by itself within 20 s whatever the test does: HOLD also keeps it
// running until then, DEADLINE does not.
const HOLD = 'setTimeout(() => process.exit(70), 20000);';
const DEADLINE = 'setTimeout(() => process.exit(70), 20000).unref();';

describe('portlease exec', () => {
  it('runs the command with PORT, PORTS and PORT_n, arguments untouched, owned by the command itself', async ({ stateDir }) => {
    const base = await freeRunBase(3);
    const script = `
      const { execFileSync } = require('node:child_process');
      const listed = execFileSync(process.execPath, [process.argv[1], 'list', '--json', '--state-dir', process.argv[2]], { encoding: 'utf8' });
      console.log(JSON.stringify({ env: [process.env.PORT, process.env.PORTS, process.env.PORT_0, process.env.PORT_1, process.env.PORT_2, process.env.PORT_3],
        args: process.argv.slice(3), pid: process.pid, claims: JSON.parse(listed).claims }));`;
    const child = exec(
      stateDir,
      ['--count', '3', '--base', String(base)],
      [process.execPath, '-e', script, cliPath, stateDir, 'a b', '$HOME', '*', '"q"'],
    );
    const result = await exited(child);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const seen = JSON.parse(result.stdout) as {
      env: unknown[];
      args: string[];
      pid: number;
      claims: Array<{ ports: number[]; pid: number; status: string }>;
    };
    expect(seen.env).toEqual([String(base), `${base} ${base + 1} ${base + 2}`, String(base), String(base + 1), String(base + 2), null]);
    expect(seen.args).toEqual(['a b', '$HOME', '*', '"q"']);
    // The run is claimed for the command's own process, and shared by portlease exec.
    expect(seen.claims).toHaveLength(2);
    expect(seen.claims).toContainEqual(expect.objectContaining({ ports: [base, base + 1, base + 2], pid: seen.pid, status: 'live' }));
    expect(seen.claims).toContainEqual(expect.objectContaining({ ports: [base, base + 1, base + 2], pid: child.pid, status: 'live' }));
    expect(await listClaims(stateDir)).toEqual([]);
  });

  it('names the variables with --prefix', async ({ stateDir }) => {
    const child = exec(
      stateDir,
      ['--count', '2', '--prefix', 'DB_'],
      [process.execPath, '-e', 'console.log(process.env.DB_PORT, process.env.DB_PORTS, process.env.DB_PORT_1, process.env.PORT)'],
    );
    const result = await exited(child);
    expect(result.stdout).toMatch(/^(\d+) \1 (\d+) \2 undefined\n$/);
  });

  it('lets a server started by the command bind $PORT, and releases the claim when it exits', async ({ stateDir }) => {
    const server = `${DEADLINE}
      const server = require('node:net').createServer((socket) => { socket.end('hello'); server.close(); });
      server.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening ' + process.env.PORT));`;
    const child = exec(stateDir, ['--host', '127.0.0.1'], [process.execPath, '-e', server]);
    const port = Number((await line(child, /^listening \d+$/)).split(' ')[1]);
    expect((await listClaims(stateDir)).map((claim) => [claim.ports, claim.status])).toEqual([
      [[port], 'live'],
      [[port], 'live'],
    ]);
    const reply = await new Promise<string>((resolve, reject) => {
      let data = '';
      connect(port, '127.0.0.1')
        .on('data', (chunk) => (data += chunk))
        .on('end', () => resolve(data))
        .on('error', reject);
    });
    expect(reply).toBe('hello');
    expect(await exited(child)).toMatchObject({ code: 0 });
    expect(await listClaims(stateDir)).toEqual([]);
  });

  it("exits with the command's exit code", async ({ stateDir }) => {
    const result = await exited(exec(stateDir, [], [process.execPath, '-e', 'process.exit(7)']));
    expect(result.code).toBe(7);
    expect(await listClaims(stateDir)).toEqual([]);
  });

  it('forwards SIGTERM to the command and releases the claim', async ({ stateDir }) => {
    const child = exec(
      stateDir,
      [],
      [
        process.execPath,
        '-e',
        `${HOLD}
      process.on('SIGTERM', () => { console.log('child got SIGTERM'); process.exit(0); });
      console.log('ready');`,
      ],
    );
    await line(child, /^ready$/);
    // One run, owned by the command and shared by portlease exec.
    const claims = await listClaims(stateDir);
    expect(claims).toHaveLength(2);
    expect(claims[0]!.ports).toEqual(claims[1]!.ports);
    expect(claims.map((claim) => claim.pid)).toContain(child.pid);
    const done = exited(child);
    child.kill('SIGTERM');
    const result = await done;
    expect(result.stdout).toContain('child got SIGTERM');
    expect(result.code).toBe(0);
    expect(await listClaims(stateDir)).toEqual([]);
  });

  it('exits 128+N when the command dies of signal N', async ({ stateDir }) => {
    const child = exec(stateDir, [], [process.execPath, '-e', `${HOLD} console.log('ready');`]);
    await line(child, /^ready$/);
    const done = exited(child);
    child.kill('SIGINT');
    expect((await done).code).toBe(130);
    expect(await listClaims(stateDir)).toEqual([]);
  });

  it('keeps the claim while the command runs on after portlease exec is SIGKILLed', async ({ stateDir }) => {
    const child = exec(stateDir, [], [process.execPath, '-e', `${HOLD} console.log('pid ' + process.pid);`]);
    const commandPid = Number((await line(child, /^pid \d+$/)).split(' ')[1]);
    strays.push(commandPid);
    child.kill('SIGKILL');
    // 'exit', not 'close': the orphaned command still holds the inherited stdout open.
    expect(await exited(child, 20_000, 'exit')).toMatchObject({ code: null, signal: 'SIGKILL' });
    expect(isRunning(commandPid)).toBe(true);
    // portlease's share died with it; the command's own claim lives on.
    const claims = await listClaims(stateDir);
    expect(claims).toContainEqual(expect.objectContaining({ pid: commandPid, status: 'live' }));
    expect(claims).toContainEqual(expect.objectContaining({ pid: child.pid, status: 'dead' }));
    process.kill(commandPid, 'SIGKILL');
    await waitFor(() => !isRunning(commandPid), 'the orphaned command to be gone');
    expect((await listClaims(stateDir)).map((claim) => claim.status)).toEqual(['dead', 'dead']);
  });

  it('reports a command that does not exist with exit 127 and leaves no claim', async ({ stateDir }) => {
    const result = await exited(exec(stateDir, [], ['portlease-no-such-command', 'x']));
    expect(result.code).toBe(127);
    expect(result.stderr).toBe('portlease: portlease-no-such-command: command not found\n');
    expect(await listClaims(stateDir)).toEqual([]);
  });

  it('runs nothing, and exits 3, when the claim fails', async ({ stateDir }) => {
    // Hold 65535 (or find it busy already), so that no run of one port fits from there.
    await exited(startCli(['claim', '--base', '65535', '--ttl', '1m', '--host', '127.0.0.1', '--state-dir', stateDir]));
    const result = await exited(exec(stateDir, ['--base', '65535', '--host', '127.0.0.1'], [process.execPath, '-e', 'console.log("ran")']));
    expect(result).toMatchObject({ code: 3, stdout: '' });
    expect(result.stderr).toMatch(/^portlease: PORTLEASE_EXHAUSTED: [^\n]*\n$/);
  });
});
