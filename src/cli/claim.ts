import { MAX_TTL_MS, resolveClaimOptions } from '../options/options.js';
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
import { countFor, envLines, parseNames, parsePrefix, type PortNaming } from './port-variables.js';

const FORMATS = ['plain', 'env', 'json'] as const;
type Format = (typeof FORMATS)[number];

/** `--format`, with `--json` as its older spelling of `--format json`. */
function parseFormat(format: string | undefined, json: boolean | undefined): Format {
  if (format !== undefined && !(FORMATS as readonly string[]).includes(format)) {
    throw new UsageError(`Expected --format to be plain, env or json, got ${JSON.stringify(format)}. See 'portlease claim --help'.`);
  }
  if (json === true && format !== undefined && format !== 'json') {
    throw new UsageError(`--json and --format ${format} contradict each other. See 'portlease claim --help'.`);
  }
  return json === true ? 'json' : ((format as Format | undefined) ?? 'plain');
}

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
    format: { type: 'string' },
    names: { type: 'string' },
    prefix: { type: 'string' },
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
  const format = parseFormat(values.format, values.json);
  const naming: PortNaming = { prefix: parsePrefix(values.prefix), names: parseNames(values.names) };
  const shape = claimShape(values);
  const count = countFor(shape.count, naming.names);
  const ttlMs = values.ttl === undefined ? undefined : asUsage('claim', () => parseDuration(values.ttl!, '--ttl'));
  if (ttlMs !== undefined && ttlMs > MAX_TTL_MS) {
    throw new UsageError(
      `Expected --ttl to be at most 3650d (ten years), got ${JSON.stringify(values.ttl)}. See 'portlease claim --help'.`,
    );
  }
  const pid = parseWholeNumber('pid', values.pid) ?? defaultOwner() ?? ttlOwner(ttlMs);
  const request = asUsage('claim', () => resolveClaimOptions({ ...shape, count, pid, ttlMs }));
  const allocator = openAllocator('claim', values['state-dir']);
  const lease = await allocator.claim(request);
  if (format === 'env') {
    process.stdout.write(envLines(naming, lease.ports));
  } else if (format === 'json') {
    // The exact expiry is the one recorded under the lock.
    const info =
      ttlMs === undefined
        ? undefined
        : (await allocator.list({ includeDead: true })).find((claim) => claim.ports[0] === lease.port && claim.pid === lease.pid);
    const names = naming.names === undefined ? {} : { names: Object.fromEntries(naming.names.map((name, i) => [name, lease.ports[i]])) };
    const { ports, host, pid: owner } = lease;
    const expiresAt = info?.expiresAt?.toISOString() ?? null;
    process.stdout.write(`${JSON.stringify({ ports, host, pid: owner, label: lease.label ?? null, expiresAt, ...names })}\n`);
  } else {
    process.stdout.write(`${lease.ports.join(' ')}\n`);
  }
  return 0;
}
