import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { Writable } from 'node:stream';
import type { Lease } from '../allocator.js';
import { resolveClaimOptions } from '../options.js';
import { asUsage, CLAIM_SHAPE_OPTIONS, claimShape, COMMON_OPTIONS, parseCommandLine, UsageError } from './args.js';
import { HELP } from './help.js';
import { openAllocator } from './open-allocator.js';
import { checkPlaceholders, expandPlaceholders, hasPlaceholders } from './placeholders.js';
import { countFor, parseNames, parsePrefix, type PortNaming, portVariables } from './port-variables.js';
import { TRAMPOLINE, trampolineScript } from './trampoline.js';

const FORWARDED_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

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
    names: { type: 'string' },
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
  const naming: PortNaming = { prefix: parsePrefix(values.prefix), names: parseNames(values.names) };
  // Checked before anything is spawned, so that bad usage runs nothing and changes nothing.
  const shape = claimShape(values);
  const request = asUsage('exec', () => resolveClaimOptions({ ...shape, count: countFor(shape.count, naming.names) }));
  checkPlaceholders(afterTerminator, [...portVariables(naming, new Array<number>(request.count).fill(0)).keys()]);
  const templated = hasPlaceholders(afterTerminator);
  const allocator = openAllocator('exec', values['state-dir']);

  let child: ChildProcess;
  let lease: Lease;
  if (process.platform === 'win32') {
    // No exec(2) to hand the claim over: it belongs to portlease, and dies with it.
    lease = await allocator.claim({ ...request, pid: process.pid });
    const variables = portVariables(naming, lease.ports);
    const [file, ...fileArgs] = expandPlaceholders(afterTerminator, variables) as [string, ...string[]];
    child = spawn(file, fileArgs, { stdio: 'inherit', env: { ...process.env, ...Object.fromEntries(variables) } });
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
      const variables = portVariables(naming, lease.ports);
      control.end(trampolineScript({ env: variables, argv: templated ? expandPlaceholders(afterTerminator, variables) : undefined }));
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
