import { COMMON_OPTIONS, parseCommandLine, parseWholeNumber, UsageError } from './args.js';
import { HELP } from './help.js';
import { openAllocator } from './open-allocator.js';
import { defaultOwners } from './owner.js';

function parsePort(text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new UsageError(`Expected PORT to be a port number from 1 to 65535, got ${JSON.stringify(text)}. See 'portlease release --help'.`);
  }
  return Number(text);
}

function noOwner(): never {
  throw new UsageError(
    "portlease runs as PID 1 of its PID namespace, so it has no caller whose claims it could release. Pass --pid PID or --label L. See 'portlease release --help'.",
  );
}

/**
 * `portlease release`: gives ports back. Without `--pid` or `--label` it acts for the
 * default owner, the same process `claim` would have made the claim for, so that
 * `PORTS=$(portlease claim ...)` and a later `portlease release` in one script pair up.
 */
export async function runRelease(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine('release', args, {
    pid: { type: 'string' },
    label: { type: 'string' },
    json: { type: 'boolean' },
    ...COMMON_OPTIONS,
  });
  if (values.help === true) {
    process.stdout.write(`${HELP.release}\n`);
    return 0;
  }
  const ports = positionals.map(parsePort);
  const explicitPid = parseWholeNumber('pid', values.pid);
  const pid = explicitPid ?? (values.label === undefined ? (defaultOwners() ?? noOwner()) : undefined);
  const allocator = openAllocator('release', values['state-dir']);
  const released = await allocator.releaseWhere({ ports: ports.length > 0 ? ports : undefined, pid, label: values.label });
  if (values.json === true) process.stdout.write(`${JSON.stringify({ released })}\n`);
  else if (released.length > 0) process.stdout.write(`${released.join(' ')}\n`);
  else
    process.stderr.write(
      `portlease: nothing to release (no claim ${pid === undefined ? '' : `of pid ${[pid].flat().join(' or ')} `}matched)\n`,
    );
  return 0;
}
