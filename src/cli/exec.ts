import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { Writable } from 'node:stream';
import type { Lease } from '../allocator.js';
import { resolveClaimOptions } from '../options.js';
import { asUsage, CLAIM_SHAPE_OPTIONS, claimShape, COMMON_OPTIONS, parseCommandLine, UsageError } from './args.js';
import { HELP } from './help.js';
import { openAllocator } from './open-allocator.js';

const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const NAME_PREFIX = /^(?:[A-Za-z_][A-Za-z0-9_]*)?$/;

/**
 * A /bin/sh that waits for `NAME=VALUE` lines on fd 3, exports them, and on the line `exec`
 * replaces itself with the command ("$@", never parsed by the shell). Its PID, and on Linux
 * its start time, are the command's: the claim can be made for the command's own process
 * before it starts, though the ports only exist once claimed. On end of input without
 * `exec` (the claim failed) it exits 125 without running anything.
 */
const TRAMPOLINE = `while IFS= read -r portlease_line <&3; do
  case $portlease_line in
    exec)
      command -v "$1" >/dev/null 2>&1 || { printf '%s: %s: command not found\n' "$0" "$1" >&2; exit 127; }
      exec "$@" 3<&- ;;
    *) export "$portlease_line" ;;
  esac
done
exit 125`;

/** The environment a command gets: `PORT`, `PORTS`, `PORT_0` ... each behind `prefix`. */
export function portEnvironment(prefix: string, ports: readonly number[]): Record<string, string> {
  const env: Record<string, string> = { [`${prefix}PORT`]: String(ports[0]), [`${prefix}PORTS`]: ports.join(' ') };
  ports.forEach((port, index) => (env[`${prefix}PORT_${index}`] = String(port)));
  return env;
}

function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

function forwardSignals(child: ChildProcess): () => void {
  // Listening also keeps portlease alive on these signals until the command has exited.
  const handlers = FORWARDED_SIGNALS.map((signal) => {
    const handler = (): void => void child.kill(signal);
    process.on(signal, handler);
    return () => process.off(signal, handler);
  });
  return () => handlers.forEach((remove) => remove());
}

/**
 * `portlease exec`: claims ports, runs the command with them in its environment, forwards
 * SIGINT/SIGTERM/SIGHUP, releases on exit and exits with the command's code (128+N for
 * signal N). The claim is owned by the command's process, so if portlease is SIGKILLed the
 * ports stay claimed exactly as long as the command still runs.
 */
export async function runExec(args: string[]): Promise<number> {
  const { values, positionals, afterTerminator } = parseCommandLine('exec', args, {
    ...CLAIM_SHAPE_OPTIONS,
    prefix: { type: 'string' },
    ...COMMON_OPTIONS,
  });
  if (values.help === true) {
    process.stdout.write(`${HELP.exec}\n`);
    return 0;
  }
  if (positionals.length > 0 || afterTerminator === undefined || afterTerminator.length === 0) {
    throw new UsageError("Missing command: put it after '--', as in 'portlease exec --count 2 -- node server.js'.");
  }
  const [command, ...commandArgs] = afterTerminator as [string, ...string[]];
  // Some /bin/sh builtins would read a leading '-' as an option of `exec`.
  if (command.startsWith('-')) throw new UsageError(`Expected a command after '--', got the option-like ${JSON.stringify(command)}.`);
  const prefix = values.prefix ?? '';
  if (!NAME_PREFIX.test(prefix)) {
    throw new UsageError(
      `Expected --prefix to be the start of an environment variable name (letters, digits, _), got ${JSON.stringify(prefix)}.`,
    );
  }
  // Checked before anything is spawned, so that bad usage runs nothing and changes nothing.
  const request = asUsage('exec', () =>
    resolveClaimOptions({
      ...claimShape(values),
    }),
  );
  const allocator = openAllocator('exec', values['state-dir']);

  let child: ChildProcess;
  let lease: Lease;
  if (process.platform === 'win32') {
    // No exec(2) to hand the claim over: it belongs to portlease, and dies with it.
    lease = await allocator.claim({ ...request, pid: process.pid });
    child = spawn(command, commandArgs, { stdio: 'inherit', env: { ...process.env, ...portEnvironment(prefix, lease.ports) } });
  } else {
    child = spawn('/bin/sh', ['-c', TRAMPOLINE, 'portlease', command, ...commandArgs], {
      stdio: ['inherit', 'inherit', 'inherit', 'pipe'],
    });
  }
  const exited = exitOf(child);
  const stopForwarding = forwardSignals(child);
  try {
    if (process.platform !== 'win32') {
      if (child.pid === undefined) await exited; // rejects with the spawn error
      const control = child.stdio[3] as Writable;
      control.on('error', () => {}); // the trampoline may be gone (killed); its exit tells the rest
      try {
        lease = await allocator.claim({ ...request, pid: child.pid! });
      } catch (error) {
        control.end(); // no `exec` line: the trampoline exits without running the command
        await exited.catch(() => undefined);
        throw error;
      }
      const env = portEnvironment(prefix, lease.ports);
      control.end(
        `${Object.entries(env)
          .map(([name, value]) => `${name}=${value}\n`)
          .join('')}exec\n`,
      );
    }
    const { code, signal } = await exited;
    await lease!.release().catch((error: unknown) => {
      // The command is gone, so its claim is dead anyway and the next search reaps it.
      process.stderr.write(
        `portlease: could not release ${lease.ports.join(' ')} now (${(error as Error).message}); they are reaped later\n`,
      );
    });
    return code ?? 128 + (signal === null ? 0 : (constants.signals[signal] ?? 0));
  } finally {
    stopForwarding();
  }
}
