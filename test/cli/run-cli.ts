import { type ChildProcess, spawn, type SpawnOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';

/** The built CLI, run as a user would: `node dist/cli.cjs` (the package's bin). */
export const cliPath = fileURLToPath(new URL('../../dist/cli.cjs', import.meta.url));
export const repoDir = fileURLToPath(new URL('../../', import.meta.url));

/** What a finished process printed and how it ended. */
export interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Collects a child's output until it exits; SIGKILLs it after `timeoutMs`. */
export function finished(child: ChildProcess, timeoutMs = 20_000): Promise<Finished> {
  return new Promise((resolve, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    // 'close', not 'exit': all output has been read by then.
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Starts `node dist/cli.cjs ...args` with piped output. */
export function startCli(args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  return spawn(process.execPath, [cliPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options });
}

/** Runs `node dist/cli.cjs ...args` to completion. */
export function runCli(args: readonly string[], options: SpawnOptions = {}, timeoutMs?: number): Promise<Finished> {
  return finished(startCli(args, options), timeoutMs);
}

/** Runs a bash script to completion (`bash -c script`), with `CLI` set to the CLI's path. */
export function runBash(script: string, env: Record<string, string> = {}, timeoutMs?: number): Promise<Finished> {
  const child = spawn('bash', ['-c', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CLI: cliPath, NODE: process.execPath, ...env },
  });
  return finished(child, timeoutMs);
}

/** One claim as `portlease list --json` prints it. */
export interface ListedClaim {
  id: string;
  ports: number[];
  host: string;
  pid: number;
  status: 'live' | 'dead' | 'expired';
  live: boolean;
  label: string | null;
  createdAt: string;
  expiresAt: string | null;
  ageMs: number;
}

/** `portlease list --json` in `stateDir`, parsed. */
export async function listClaims(stateDir: string): Promise<ListedClaim[]> {
  const result = await runCli(['list', '--json', '--state-dir', stateDir]);
  if (result.code !== 0) throw new Error(`list failed (${result.code}): ${result.stderr}`);
  return (JSON.parse(result.stdout) as { claims: ListedClaim[] }).claims;
}

/** Whether a process with `pid` exists (and is not a zombie we could still see). */
export function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls `check` every 20 ms until it holds or `timeoutMs` passes. */
export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
