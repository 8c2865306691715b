// Child processes of tests: fixtures over IPC, waiting for them, stopping and killing them.
import { type ChildProcess, fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const fixturesDir = fileURLToPath(new URL('../fixtures/', import.meta.url));
export const distEntry = fileURLToPath(new URL('../../dist/index.js', import.meta.url));

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
    const onExit = (code: number | null, signal: string | null) =>
      done(new Error(`child exited (${code ?? signal}) before sending a message`));
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

/** How a child ended, and what it printed (where its output was piped). */
export interface Exited {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * The one way to wait for a child: resolves once it has exited and its output (if piped) is
 * read, SIGKILLing it after `timeoutMs`; rejects if it could not be started. `until: 'exit'`
 * does not wait for its output to end (an orphan it left may hold the pipe).
 */
export function exited(child: ChildProcess, timeoutMs = 20_000, until?: 'exit' | 'close'): Promise<Exited> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const streamsDone = [child.stdout, child.stderr].every((stream) => stream === null || stream.destroyed);
    if ((child.exitCode !== null || child.signalCode !== null) && streamsDone) {
      resolve({ code: child.exitCode, signal: child.signalCode, stdout, stderr });
      return;
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    // With output piped, 'close': all of it has been read by then. Without, 'exit': an orphan
    // that inherited the child's other descriptors must not keep us waiting.
    const piped = child.stdout !== null || child.stderr !== null;
    child.once(until ?? (piped ? 'close' : 'exit'), (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** The state (from /proc/<pid>/stat, Linux) of a process: 'T' once it is stopped. */
export function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

export async function untilStopped(child: ChildProcess, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (processState(child.pid!) !== 'T') {
    if (Date.now() > deadline || child.exitCode !== null)
      throw new Error(`process ${child.pid} never stopped (SIGSTOP or its pause point)`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Kills every still-running child; for `finally` blocks. */
export function killAll(children: Iterable<ChildProcess>): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}
