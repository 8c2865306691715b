import { resolveClaimOptions } from '../options.js';
import {
  asUsage,
  CLAIM_SHAPE_OPTIONS,
  claimShape,
  COMMON_OPTIONS,
  noPositionals,
  parseCommandLine,
  parseWholeNumber,
  UsageError,
} from './args.js';
import { parseDuration } from './duration.js';
import { HELP } from './help.js';
import { openAllocator } from './open-allocator.js';
import { defaultOwner } from './owner.js';

/**
 * The owner to record when no process can own the claim (the CLI is PID 1 of its
 * namespace): with `--ttl`, the CLI itself, since a TTL claim does not die with its owner;
 * without, a usage error rather than a claim that is dead on arrival.
 */
function ttlOwner(ttlMs: number | undefined): number {
  if (ttlMs !== undefined) return process.pid;
  throw new UsageError(
    "portlease runs as PID 1 of its PID namespace, so no process there outlives it and a claim it owned would be dead at once. Pass --ttl DURATION, or --pid PID of the process that will use the ports. See 'portlease claim --help'.",
  );
}

/** `portlease claim`: claims ports for the caller (see {@link defaultOwner}) and prints them. */
export async function runClaim(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine('claim', args, {
    ...CLAIM_SHAPE_OPTIONS,
    pid: { type: 'string' },
    ttl: { type: 'string' },
    json: { type: 'boolean' },
    ...COMMON_OPTIONS,
  });
  if (values.help === true) {
    process.stdout.write(`${HELP.claim}\n`);
    return 0;
  }
  noPositionals('claim', positionals);
  if (values.pid !== undefined && values.ttl !== undefined) {
    // A TTL claim outlives its owner by design; naming an owner as well would suggest otherwise.
    throw new UsageError(
      "--pid and --ttl exclude each other: a claim lives either as long as a process or for a time. See 'portlease claim --help'.",
    );
  }
  const ttlMs = values.ttl === undefined ? undefined : asUsage('claim', () => parseDuration(values.ttl!, '--ttl'));
  const pid = parseWholeNumber('pid', values.pid) ?? defaultOwner() ?? ttlOwner(ttlMs);
  const request = asUsage('claim', () => resolveClaimOptions({ ...claimShape(values), pid, ttlMs }));
  const allocator = openAllocator('claim', values['state-dir']);
  const lease = await allocator.claim(request);
  let expiresAt: string | null = null;
  if (values.json === true && ttlMs !== undefined) {
    // The exact expiry is the one recorded under the lock.
    const info = (await allocator.list({ includeDead: true })).find((claim) => claim.ports[0] === lease.port && claim.pid === lease.pid);
    expiresAt = info?.expiresAt?.toISOString() ?? null;
  }
  process.stdout.write(
    values.json === true
      ? `${JSON.stringify({ ports: lease.ports, host: lease.host, pid: lease.pid, label: lease.label ?? null, expiresAt })}\n`
      : `${lease.ports.join(' ')}\n`,
  );
  return 0;
}
