import { type ChildProcess, fork } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type ClaimRecord, StateStore } from '../src/state.js';

/** A fresh private state directory; removed by the returned cleanup. */
export function makeStateDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'portlease-test-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The state file(s) of a state directory, as text (for "unchanged" assertions). */
export function snapshotDir(dir: string): Record<string, string> {
  if (!existsSync(dir)) return {};
  const files: Record<string, string> = {};
  for (const name of readdirSync(dir)) {
    try {
      files[name] = readFileSync(join(dir, name), 'utf8');
    } catch {
      files[name] = '<dir>';
    }
  }
  return files;
}

/** Listens on `port` (0 = any) and `host`; resolves to the server. */
export function listen(port: number, host = '127.0.0.1', ipv6Only = false): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port, host, ipv6Only }, () => resolve(server));
  });
}

/** Closes a server. */
export function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Whether `port` can be listened on `host` right now. */
export async function canBind(port: number, host = '0.0.0.0'): Promise<boolean> {
  try {
    await close(await listen(port, host));
    return true;
  } catch {
    return false;
  }
}

/** A port the kernel reports free, with `span` ports after it also bindable on 0.0.0.0 (best effort). */
export async function freeRunBase(span: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 8000);
    const checks = await Promise.all(Array.from({ length: span }, (_, i) => canBind(base + i)));
    if (checks.every(Boolean)) return base;
  }
  throw new Error('no free run found for the test');
}

export const fixturesDir = fileURLToPath(new URL('./fixtures/', import.meta.url));
export const distEntry = fileURLToPath(new URL('../dist/index.js', import.meta.url));

/** Forks a fixture script with IPC; it receives the dist entry in PORTLEASE_DIST. */
export function forkFixture(name: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  return fork(join(fixturesDir, name), args, {
    env: { ...process.env, PORTLEASE_DIST: distEntry, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/** The next IPC message of `child`, or a rejection after `timeoutMs` or on exit. */
export function nextMessage<T>(child: ChildProcess, timeoutMs = 20_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`no message from child within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (message: T) => done(undefined, message);
    const onExit = (code: number | null, signal: string | null) => done(new Error(`child exited (${code ?? signal}) before sending a message`));
    function done(error: Error | undefined, message?: T): void {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(message as T);
    }
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

/** Resolves when `child` has exited (killing it after `timeoutMs`). */
export function exited(child: ChildProcess, timeoutMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

/** Kills every still-running child; for `finally` blocks. */
export function killAll(children: Iterable<ChildProcess>): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** The claims stored in a state file, read as a fresh process would (no cache, no repair). */
export function storedClaims(stateFile: string): ClaimRecord[] {
  return new StateStore(stateFile, false).load(false).claims;
}
