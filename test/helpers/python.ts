// Python, for tests that need a program that binds as most programs do (without SO_REUSEADDR).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exited } from './processes.js';

/** Whether python3 is on PATH (the "really served" tests need a program that binds without Node's socket options). */
let pythonFound: boolean | undefined;
export function hasPython(): boolean {
  pythonFound ??= spawnSync('python3', ['--version'], { stdio: 'ignore' }).status === 0;
  return pythonFound;
}

/**
 * Binds and listens on `port` from python3, which (unlike libuv) sets no SO_REUSEADDR:
 * `'ok'`, or the errno (98 = EADDRINUSE on Linux).
 */
export function bindWithoutReuseAddr(port: number, host = '127.0.0.1'): string {
  const script =
    'import socket,sys\ns=socket.socket()\ntry:\n s.bind((sys.argv[1],int(sys.argv[2]))); s.listen(); print("ok")\nexcept OSError as e: print(e.errno)';
  return spawnSync('python3', ['-c', script, host, String(port)], { encoding: 'utf8', timeout: 10_000 }).stdout.trim();
}

/**
 * Starts `python3 -m http.server --bind 127.0.0.1 PORT`, waits (bounded) until it answers
 * an HTTP request, then kills it. Rejects with python's stderr if it cannot serve.
 */
export async function serveWithPython(port: number, timeoutMs = 10_000): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'portlease-serve-'));
  const server = spawn('python3', ['-m', 'http.server', '--bind', '127.0.0.1', '--directory', root, String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  server.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (server.exitCode !== null) throw new Error(`python3 http.server on ${port} exited (${server.exitCode}): ${stderr.trim()}`);
      const status = await new Promise<number | undefined>((resolve) => {
        const request = httpGet({ host: '127.0.0.1', port, path: '/', timeout: 1000 }, (response) => {
          response.resume();
          resolve(response.statusCode);
        });
        request.on('error', () => resolve(undefined));
        request.on('timeout', () => request.destroy());
      });
      if (status === 200) return;
      if (Date.now() > deadline) throw new Error(`python3 http.server on ${port} did not answer within ${timeoutMs} ms: ${stderr.trim()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    server.kill('SIGKILL');
    await exited(server);
    rmSync(root, { recursive: true, force: true });
  }
}
