import { resolveClaimOptions } from '../options.js';
import { asUsage, CLAIM_SHAPE_OPTIONS, claimShape, COMMON_OPTIONS, noPositionals, parseCommandLine, parseWholeNumber, UsageError } from './args.js';
import { parseDuration } from './duration.js';
import { HELP } from './help.js';
import { openAllocator } from './open-allocator.js';
import { defaultOwner } from './owner.js';

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
    throw new UsageError("--pid and --ttl exclude each other: a claim lives either as long as a process or for a time. See 'portlease claim --help'.");
  }
  const ttlMs = values.ttl === undefined ? undefined : asUsage('claim', () => parseDuration(values.ttl!, '--ttl'));
  const request = asUsage('claim', () =>
    resolveClaimOptions({
      ...claimShape(values),
      pid: parseWholeNumber('pid', values.pid) ?? defaultOwner(),
      ttlMs,
    }),
  );
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
