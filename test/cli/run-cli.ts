import { type ChildProcess, spawn, type SpawnOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type Exited, exited } from '../helpers/processes.js';

/** The built CLI, run as a user would: `node dist/cli.cjs` (the package's bin). */
export const cliPath = fileURLToPath(new URL('../../dist/cli.cjs', import.meta.url));
export const repoDir = fileURLToPath(new URL('../../', import.meta.url));

/** How a CLI run ended, and what it printed. */
export type Finished = Exited;

/** Starts `node dist/cli.cjs ...args` with piped output. */
export function startCli(args: readonly string[], options: SpawnOptions = {}): ChildProcess {
  return spawn(process.execPath, [cliPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options });
}

/** Runs `node dist/cli.cjs ...args` to completion. */
export function runCli(args: readonly string[], options: SpawnOptions = {}, timeoutMs?: number): Promise<Finished> {
  return exited(startCli(args, options), timeoutMs);
}

/** Runs a bash script to completion (`bash -c script`), with `CLI` set to the CLI's path. */
export function runBash(script: string, env: Record<string, string> = {}, timeoutMs?: number): Promise<Finished> {
  const child = spawn('bash', ['-c', script], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CLI: cliPath, NODE: process.execPath, ...env },
  });
  return exited(child, timeoutMs);
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
