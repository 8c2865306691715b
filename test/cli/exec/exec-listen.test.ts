import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { distEntry, fixturesDir, exited } from '../../helpers/processes.js';
import { hasPython } from '../../helpers/python.js';
import { makeStateDir, snapshotDir } from '../../helpers/state-dir.js';
import { type Finished, listClaims, startCli, waitFor } from '../run-cli.js';

let stateDir: string;
let cleanup: () => void;
let work: string;
const children: ChildProcess[] = [];
beforeEach(() => {
  ({ dir: stateDir, cleanup } = makeStateDir());
  work = mkdtempSync(join(tmpdir(), 'portlease-listen-'));
});
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  cleanup();
  rmSync(work, { recursive: true, force: true });
});

const skipUnix = process.platform === 'win32';

/** GET / on 127.0.0.1:port: the body, or undefined when nothing answers. */
function httpBody(port: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const request = httpGet({ host: '127.0.0.1', port, path: '/', timeout: 2000 }, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve(body));
    });
    request.on('error', () => resolve(undefined));
    request.on('timeout', () => request.destroy());
  });
}

// Each server (arguments TRIED STOP) waits until the thief has tried to bind its port (the
// file TRIED-<PORT>), takes its socket, answers requests with its port and what it got, and
// exits once the file STOP exists, so that the port stays held until the thief has stopped.
// 20 s deadline each.
const NODE_FD_SERVER = `setTimeout(() => process.exit(70), 20000).unref();
  const tried = process.argv[1] + '-' + process.env.PORT;
  const env = [process.env.PORT, process.env.LISTEN_FDS, process.env.LISTEN_FDNAMES, process.env.LISTEN_PID === String(process.pid)].join(' ');
  const wait = () => (require('node:fs').existsSync(tried) ? start() : setTimeout(wait, 10));
  function start() {
    const server = require('node:http').createServer((q, r) => r.end('node ' + env));
    server.on('error', (error) => { console.log('error ' + error.code + ' ' + process.env.PORT); process.exit(1); });
    const stop = () => (require('node:fs').existsSync(process.argv[2]) ? process.exit(0) : setTimeout(stop, 10));
    stop();
    if (process.env.LISTEN_FDS) server.listen({ fd: 3 }); else server.listen(Number(process.env.PORT), '127.0.0.1');
  }
  wait();`;

const PYTHON_FD_SERVER = `import http.server, os, socket, sys, time
deadline = time.time() + 20
while not os.path.exists(sys.argv[1] + '-' + os.environ['PORT']) and time.time() < deadline: time.sleep(0.01)
env = ' '.join([os.environ['PORT'], os.environ['LISTEN_FDS'], os.environ['LISTEN_FDNAMES'], str(os.environ['LISTEN_PID'] == str(os.getpid())).lower()])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ('python ' + env).encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *args): pass
server = http.server.HTTPServer(('127.0.0.1', 0), Handler, bind_and_activate=False)
server.socket.close()
server.socket = socket.socket(fileno=3)
server.timeout = 0.05
while not os.path.exists(sys.argv[2]) and time.time() < deadline: server.handle_request()`;

interface ThiefReport {
  attempts: Record<string, number>;
  stolen: number[];
}

/**
 * Runs `exec [--listen] -- server TRIED` next to a thief that binds the claimed port as soon
 * as it is claimed; resolves to exec's result, the thief's report and the server's answer.
 */
async function withThief(
  execArgs: string[],
  server: string[],
  expectAnswer: boolean,
): Promise<{ exec: Finished; thief: ThiefReport; body: string | undefined }> {
  const tried = join(work, 'tried');
  const done = join(work, 'done');
  const stop = join(work, 'stop');
  const thief = spawn(process.execPath, [join(fixturesDir, 'port-thief.mjs'), stateDir, tried, done], {
    env: { ...process.env, PORTLEASE_DIST: distEntry },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(thief);
  const thiefDone = exited(thief);
  const exec = startCli(['exec', '--state-dir', stateDir, '--host', '127.0.0.1', ...execArgs, '--', ...server, tried, stop]);
  children.push(exec);
  const execDone = exited(exec);
  let body: string | undefined;
  if (expectAnswer) {
    // Tentative claims come and go while the thief races the probe: ask the current one each time.
    await waitFor(async () => {
      const port = (await listClaims(stateDir))[0]?.ports[0];
      return port !== undefined && (body = await httpBody(port)) !== undefined;
    }, 'the server to answer');
  }
  // A server that could not bind ends by itself; else the thief stops first, and only then
  // may the server end and free its port.
  let execResult = expectAnswer ? undefined : await execDone;
  writeFileSync(done, '');
  const thiefResult = await thiefDone;
  writeFileSync(stop, '');
  execResult ??= await execDone;
  return { exec: execResult, thief: JSON.parse(thiefResult.stdout) as ThiefReport, body };
}

describe('portlease exec --listen', () => {
  it.skipIf(skipUnix)('without --listen a thief binds the port between claim and server (the window this closes)', async () => {
    const { exec, thief } = await withThief([], [process.execPath, '-e', NODE_FD_SERVER], false);
    expect(exec.stdout).toMatch(/^error EADDRINUSE \d+\n$/);
    expect(thief.stolen).toContain(Number(exec.stdout.trim().split(' ')[2]));
    expect(exec.code).toBe(1);
  });

  it.skipIf(skipUnix)('hands a Node server its listening socket as fd 3; the thief never binds its port', async () => {
    const { exec, thief, body } = await withThief(['--listen', '--names', 'web'], [process.execPath, '-e', NODE_FD_SERVER], true);
    const [port, ...rest] = body!.split(' ').slice(1);
    expect(rest).toEqual(['1', 'web', 'true']);
    // The thief tried the served port before the server took its socket, and never got it.
    // (A port it won in the instant between the claim's record and its probe was given up
    // by portlease, never handed to the command.)
    expect(thief.attempts[port!]).toBeGreaterThan(0);
    expect(thief.stolen).not.toContain(Number(port));
    expect(exec).toMatchObject({ code: 0, stderr: '' });
    expect(await listClaims(stateDir)).toEqual([]);
  });

  it.skipIf(skipUnix || !hasPython())('hands a Python server (socket.socket(fileno=3)) its socket; the thief never binds it', async () => {
    const { exec, thief, body } = await withThief(['--listen', '--count', '2'], ['python3', '-c', PYTHON_FD_SERVER], true);
    const [port, ...rest] = body!.split(' ').slice(1);
    expect(rest).toEqual(['2', 'PORT_0:PORT_1', 'true']);
    expect(thief.attempts[port!]).toBeGreaterThan(0);
    expect(thief.stolen).not.toContain(Number(port));
    expect(thief.stolen).not.toContain(Number(port) + 1);
    expect(exec).toMatchObject({ code: 0, stderr: '' });
    expect(await listClaims(stateDir)).toEqual([]);
  });

  it.skipIf(skipUnix)('holds the claim for the command itself, and fds 3 and 4 are listening sockets', async () => {
    const script = `const { execFileSync } = require('node:child_process');
      const { fstatSync } = require('node:fs');
      const listed = JSON.parse(execFileSync(process.execPath, [process.argv[1], 'list', '--json', '--state-dir', process.argv[2]], { encoding: 'utf8' }));
      console.log(JSON.stringify({ pid: process.pid, owners: listed.claims.map((claim) => claim.pid), sockets: [3, 4].map((fd) => fstatSync(fd).isSocket()) }));`;
    const { cliPath } = await import('../run-cli.js');
    const result = await exited(
      startCli(['exec', '--state-dir', stateDir, '--listen', '-n', '2', '--', process.execPath, '-e', script, cliPath, stateDir]),
    );
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const seen = JSON.parse(result.stdout) as { pid: number; owners: number[]; sockets: boolean[] };
    // Owned by the command, and by portlease exec, which claimed and listened first.
    expect(seen.owners).toContain(seen.pid);
    expect(seen.owners).toHaveLength(2);
    expect(seen.sockets).toEqual([true, true]);
  });

  it('refuses more than 6 ports with a usage error, changing nothing', async () => {
    const before = snapshotDir(stateDir);
    const result = await exited(startCli(['exec', '--state-dir', stateDir, '--listen', '--count', '7', '--', 'true']));
    expect(result).toMatchObject({ code: 2, stdout: '' });
    expect(result.stderr).toContain('--listen hands over at most 6 ports');
    expect(snapshotDir(stateDir)).toEqual(before);
  });
});
