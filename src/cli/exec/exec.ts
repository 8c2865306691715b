import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { Writable } from 'node:stream';
import type { Lease, ListeningSockets, PortAllocator } from '../../api/allocator.js';
import { UnsupportedError } from '../../base/errors.js';
import { resolveClaimOptions, type ResolvedClaimOptions } from '../../options/options.js';
import { asUsage, CLAIM_SHAPE_OPTIONS, claimShape, COMMON_OPTIONS, parseCommandLine, UsageError } from '../args.js';
import { parseDuration } from '../duration.js';
import { HELP } from '../help.js';
import { openAllocator } from '../open-allocator.js';
import { checkPlaceholders, expandPlaceholders, hasPlaceholders } from './placeholders.js';
import { countFor, parseNames, parsePrefix, type PortNaming, portVariables } from '../port-variables.js';
import { watchParent } from './parent-watch.js';
import { CommandGroup } from './process-group.js';
import { trampoline, trampolineScript } from './trampoline.js';

const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
/** How long the command's group gets after a signal before SIGKILL, unless `--kill-after`. */
const DEFAULT_KILL_AFTER_MS = 10_000;
/** fds 3 and up carry the sockets and then the trampoline's control pipe; dash reads single-digit fds only. */
const MAX_LISTEN_PORTS = 6;
/** How often `--listen` claims anew when a process outside portlease bound a port after the probe. */
const LISTEN_ATTEMPTS = 3;

/** What `exec` was asked to do, checked. */
interface ExecPlan {
  argv: [string, ...string[]];
  naming: PortNaming;
  request: ResolvedClaimOptions;
  killAfterMs: number;
  listen: boolean;
  allocator: PortAllocator;
}

/** The command started: its trampoline, its lease, and how it ends. */
interface Started {
  child: ChildProcess;
  exited: Promise<Exit>;
  lease: Lease;
  control: Writable;
  /** Variables for the trampoline to export besides the ports. */
  extraEnv: Record<string, string>;
}

type Exit = { code: number | null; signal: NodeJS.Signals | null };

function exitOf(child: ChildProcess): Promise<Exit> {
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

/** Calls `handler` on SIGINT, SIGTERM and SIGHUP (which also keeps portlease alive on them); returns the undo. */
function onSignals(handler: (signal: NodeJS.Signals) => void): () => void {
  const removers = FORWARDED_SIGNALS.map((signal) => {
    const listener = (): void => handler(signal);
    process.on(signal, listener);
    return () => process.off(signal, listener);
  });
  return () => removers.forEach((remove) => remove());
}

/** The parsed, checked command line; nothing is spawned or claimed for bad usage. */
function plan(args: string[]): ExecPlan | undefined {
  const { values, positionals, afterTerminator } = parseCommandLine('exec', args, {
    ...CLAIM_SHAPE_OPTIONS,
    prefix: { type: 'string' },
    names: { type: 'string' },
    'kill-after': { type: 'string' },
    listen: { type: 'boolean' },
    ...COMMON_OPTIONS,
  });
  if (values.help === true) return undefined;
  if (positionals.length > 0 || afterTerminator === undefined || afterTerminator.length === 0) {
    throw new UsageError("Missing command: put it after '--', as in 'portlease exec --count 2 -- node server.js'.");
  }
  const argv = afterTerminator as [string, ...string[]];
  // Some /bin/sh builtins would read a leading '-' as an option of `exec`.
  if (argv[0].startsWith('-')) throw new UsageError(`Expected a command after '--', got the option-like ${JSON.stringify(argv[0])}.`);
  const naming: PortNaming = { prefix: parsePrefix(values.prefix), names: parseNames(values.names) };
  const shape = claimShape(values);
  const request = asUsage('exec', () => resolveClaimOptions({ ...shape, count: countFor(shape.count, naming.names) }));
  checkPlaceholders(argv, [...portVariables(naming, new Array<number>(request.count).fill(0)).keys()]);
  const killAfter = values['kill-after'];
  const killAfterMs = killAfter === undefined ? DEFAULT_KILL_AFTER_MS : asUsage('exec', () => parseDuration(killAfter, '--kill-after'));
  const listen = values.listen === true;
  if (listen && request.count > MAX_LISTEN_PORTS) {
    throw new UsageError(`--listen hands over at most ${MAX_LISTEN_PORTS} ports (fds 3 to ${2 + MAX_LISTEN_PORTS}), got ${request.count}.`);
  }
  if (listen && request.protocol === 'udp') {
    throw new UsageError('--listen hands over listening TCP sockets; it does not go with --protocol udp.');
  }
  if (listen && process.platform === 'win32') {
    throw new UnsupportedError(
      'exec --listen is not available on Windows: a listening socket cannot be inherited there as fd 3 (that takes WSADuplicateSocket, which Node does not expose).',
    );
  }
  return { argv, naming, request, killAfterMs, listen, allocator: openAllocator('exec', values['state-dir']) };
}

/** The exit code of `exec` for the command's end: its code, or 128+N for signal N. */
function exitCode({ code, signal }: Exit): number {
  return code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0));
}

/** Gives back the command's claim and portlease's share of it. */
async function releaseBoth(allocator: PortAllocator, lease: Lease, commandPid: number): Promise<void> {
  await allocator.releaseWhere({ ports: lease.ports, pid: [commandPid, process.pid] }).catch((error: unknown) => {
    // Nothing of the command runs any more: once portlease exits too, the claims are dead and reaped.
    process.stderr.write(
      `portlease: could not release ${lease.ports.join(' ')} now (${(error as Error).message}); they are reaped later\n`,
    );
  });
}

async function releaseQuietly(lease: Lease): Promise<void> {
  await lease.release().catch((error: unknown) => {
    // Nothing of the command runs any more, so its claim is dead anyway and the next search reaps it.
    process.stderr.write(
      `portlease: could not release ${lease.ports.join(' ')} now (${(error as Error).message}); they are reaped later\n`,
    );
  });
}

/** Windows: no exec(2) to hand the claim over and no process groups; the claim belongs to portlease and dies with it. */
async function runOnWindows({ argv, naming, request, allocator }: ExecPlan): Promise<number> {
  const lease = await allocator.claim({ ...request, pid: process.pid });
  const variables = portVariables(naming, lease.ports);
  const [file, ...fileArgs] = expandPlaceholders(argv, variables) as [string, ...string[]];
  const child = spawn(file, fileArgs, { stdio: 'inherit', env: { ...process.env, ...Object.fromEntries(variables) } });
  const stopForwarding = onSignals((signal) => void child.kill(signal));
  try {
    return exitCode(await exitOf(child));
  } finally {
    stopForwarding();
    await releaseQuietly(lease);
  }
}

function spawnTrampoline(argv: readonly string[], sockets: readonly number[]): { child: ChildProcess; exited: Promise<Exit> } {
  // detached: a new session and process group, so the group can be signalled as a whole.
  const child = spawn('/bin/sh', ['-c', trampoline(3 + sockets.length), 'portlease', ...argv], {
    stdio: ['inherit', 'inherit', 'inherit', ...sockets, 'pipe'],
    detached: true,
  });
  return { child, exited: exitOf(child) };
}

/**
 * The claim is made for portlease and shared with the trampoline's PID, which becomes the
 * command's: portlease holds the ports' tokens itself, and a keeper holds them for the
 * command, so they stay claimed against other users while either runs.
 */
async function startPlain({ argv, request, allocator }: ExecPlan): Promise<Started> {
  const { child, exited } = spawnTrampoline(argv, []);
  if (child.pid === undefined) await exited; // rejects with the spawn error
  const control = child.stdio[3] as Writable;
  control.on('error', () => {}); // the trampoline may be gone (killed); its exit tells the rest
  try {
    const lease = await allocator.claim({ ...request, pid: process.pid });
    try {
      // Both own the ports: a claim of the command's PID alone is dead from the command's exit,
      // while processes of its group may still run; portlease's alone dies with a SIGKILLed
      // portlease while the command runs on.
      await allocator.share(lease.ports, process.pid, child.pid!);
    } catch (error) {
      await releaseQuietly(lease);
      throw error;
    }
    return { child, exited, control, lease, extraEnv: {} };
  } catch (error) {
    control.end(); // no `exec` line: the trampoline exits without running the command
    await exited.catch(() => undefined);
    throw error;
  }
}

/** Claims for portlease and listens; a port a process outside portlease bound since the probe makes it claim anew. */
async function claimAndListen({ request, allocator }: ExecPlan): Promise<{ lease: Lease; sockets: ListeningSockets }> {
  for (let attempt = 1; ; attempt++) {
    const lease = await allocator.claim({ ...request, pid: process.pid });
    try {
      return { lease, sockets: await lease.listen() };
    } catch (error) {
      await lease.release();
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt === LISTEN_ATTEMPTS) throw error;
    }
  }
}

/**
 * `--listen`: portlease claims and listens first, so the sockets exist before the command
 * does; the trampoline inherits them as fds 3, 4, ... and the claim passes to its PID.
 */
async function startListening(plan: ExecPlan): Promise<Started> {
  const { lease, sockets } = await claimAndListen(plan);
  let started: { child: ChildProcess; exited: Promise<Exit> };
  try {
    started = spawnTrampoline(plan.argv, sockets.fds());
  } finally {
    // The trampoline holds its own copies; this process must not accept on them.
    await sockets.close();
  }
  const { child, exited } = started;
  const control = child.stdio[3 + lease.ports.length] as Writable;
  control.on('error', () => {});
  try {
    if (child.pid === undefined) await exited;
    // The command owns the ports too, so they outlive a SIGKILLed portlease while it runs.
    await plan.allocator.share(lease.ports, process.pid, child.pid);
  } catch (error) {
    control.end();
    await exited.catch(() => undefined);
    await releaseQuietly(lease);
    throw error;
  }
  const { prefix, names } = plan.naming;
  const fdNames = names ?? lease.ports.map((_, index) => `${prefix}PORT_${index}`);
  return { child, exited, control, lease, extraEnv: sockets.env(fdNames) };
}

/**
 * Unix: the trampoline starts as the leader of a process group of its own, the claim ends
 * up with its PID, and it then becomes the command. Signals go to the whole group; the
 * claim is released only when nothing of the group runs any more.
 */
async function runInGroup(plan: ExecPlan): Promise<number> {
  const { argv, naming, killAfterMs, allocator } = plan;
  const { child, exited, control, lease, extraEnv } = await (plan.listen ? startListening(plan) : startPlain(plan));
  const group = new CommandGroup(child.pid!);
  const stopForwarding = onSignals((signal) => group.terminate(signal, killAfterMs));
  // A vanished parent (npx stopped by SIGTERM) counts as a request to stop.
  const stopWatching = watchParent(() => group.terminate('SIGTERM', killAfterMs));
  try {
    const variables = portVariables(naming, lease.ports);
    const env = new Map([...variables, ...Object.entries(extraEnv)]);
    const newArgv = hasPlaceholders(argv) ? expandPlaceholders(argv, variables) : undefined;
    control.end(trampolineScript({ env, argv: newArgv, listenPid: plan.listen }));
    const exit = await exited;
    // The command is gone, but processes it started may still run on the ports: the claim
    // portlease shares keeps them until those are gone too.
    if (group.hasMembers()) await group.untilEmpty();
    await releaseBoth(allocator, lease, child.pid!);
    return exitCode(exit);
  } finally {
    stopWatching();
    stopForwarding();
    group.dispose();
  }
}

/**
 * `portlease exec`: claims ports, runs the command with them in its environment and
 * placeholders, forwards SIGINT/SIGTERM/SIGHUP to its whole process group, releases once
 * nothing of that group runs and exits with the command's code (128+N for signal N). The
 * ports are claimed for the command's process and for portlease both, so they stay claimed
 * while either runs: after the command's exit while processes it started still run, and
 * after a SIGKILLed portlease while the command runs.
 */
export async function runExec(args: string[]): Promise<number> {
  const checked = plan(args);
  if (checked === undefined) {
    process.stdout.write(`${HELP.exec}\n`);
    return 0;
  }
  return process.platform === 'win32' ? runOnWindows(checked) : runInGroup(checked);
}
