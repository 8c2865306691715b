import { createServer, isIP } from 'node:net';
import { processSlot } from '../base/process-state.js';
import { HostUnavailableError, isResourceExhaustion, ResourcesExhaustedError } from '../base/errors.js';
import type { Protocol } from '../options/options.js';

/**
 * How this machine's address families share ports:
 * - `dual`: a bind on `::` with `ipv6Only: false` also covers IPv4 (Linux, macOS, Windows by default);
 * - `separate`: IPv6 exists but `::` does not cover IPv4 (dual-stack off), so each family's wildcard is probed;
 * - `ipv4-only`: no IPv6 at all.
 */
export type AddressStack = 'dual' | 'separate' | 'ipv4-only';

/** One bind a probe makes. */
export interface ProbeAddress {
  address: string;
  ipv6Only: boolean;
  /** The requested host itself: if it does not exist, that is the caller's error. Auxiliary addresses that do not exist are skipped. */
  required: boolean;
}

type BindOutcome = { kind: 'free' } | { kind: 'busy' } | { kind: 'absent'; error: Error };

// The address is not this machine's, or its family is missing: no port will ever bind there.
const ABSENT_ERRORS = new Set(['EADDRNOTAVAIL', 'EAFNOSUPPORT', 'EPROTONOSUPPORT', 'EINVAL']);
const LOOKUP_ERRORS = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EAI_NODATA']);
// Ports probed at once (each bind holds a descriptor until it is closed).
const PROBE_BATCH = 64;

/** @throws {ResourcesExhaustedError} when the bind failed for lack of a system resource. */
function classify(error: NodeJS.ErrnoException): BindOutcome {
  if (isResourceExhaustion(error)) throw new ResourcesExhaustedError(error);
  // Everything else (EADDRINUSE, EACCES for a privileged or OS-reserved port, ...) means "skip this port".
  return error.code !== undefined && ABSENT_ERRORS.has(error.code) ? { kind: 'absent', error } : { kind: 'busy' };
}

/**
 * Listen options for one probe bind. The dual-stack wildcard is asked for without a host:
 * libuv then binds `::` with IPV6_V6ONLY off (falling back to `0.0.0.0` without IPv6),
 * while any host makes Node load its DNS module first (a visible part of a cold start, even for an
 * IP literal).
 */
function listenOptions(
  port: number,
  address: string,
  ipv6Only: boolean,
): { port: number; host?: string; ipv6Only: boolean; exclusive: true } {
  // exclusive: never share a handle with a cluster primary, which would hide a conflict.
  return address === '::' && !ipv6Only ? { port, ipv6Only, exclusive: true } : { port, host: address, ipv6Only, exclusive: true };
}

function bindTcp(port: number, address: string, ipv6Only: boolean): Promise<BindOutcome> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', (error: NodeJS.ErrnoException) => {
      server.close();
      try {
        resolve(classify(error));
      } catch (resourceError) {
        reject(resourceError);
      }
    });
    server.listen(listenOptions(port, address, ipv6Only), () => {
      server.close(() => resolve({ kind: 'free' }));
    });
  });
}

async function bindUdp(port: number, address: string, ipv6Only: boolean): Promise<BindOutcome> {
  // Loaded on demand: most claims are TCP only.
  const { createSocket } = await import('node:dgram');
  return new Promise((resolve, reject) => {
    const socket = createSocket({ type: isIP(address) === 6 ? 'udp6' : 'udp4', ipv6Only });
    socket.unref();
    socket.once('error', (error: NodeJS.ErrnoException) => {
      socket.close();
      try {
        resolve(classify(error));
      } catch (resourceError) {
        reject(resourceError);
      }
    });
    socket.bind({ port, address, exclusive: true }, () => {
      socket.close(() => resolve({ kind: 'free' }));
    });
  });
}

/**
 * The binds that tell whether a port is free for `address` in every family: the address
 * itself, plus the wildcards that collide with any listener of either family. A listener
 * on `::1` does not stop a bind on `127.0.0.1` (nor the reverse), and one on `::` with
 * `ipv6Only` does not stop `0.0.0.0`; but a dual-stack bind on `::` fails if any IPv4 or
 * IPv6 socket holds the port, so where dual-stack works that one extra bind sees them all.
 */
export function probeAddresses(address: string, stack: AddressStack): ProbeAddress[] {
  // The dual-stack wildcard covers the IPv4 wildcard too (a listener that would stop a bind
  // on 0.0.0.0 stops it as well), so the default host costs one bind per port, not two.
  if (stack === 'dual' && address === '0.0.0.0') return [{ address: '::', ipv6Only: false, required: true }];
  const own: ProbeAddress = { address, ipv6Only: false, required: true };
  const wildcards: ProbeAddress[] =
    stack === 'dual'
      ? [{ address: '::', ipv6Only: false, required: false }]
      : stack === 'separate'
        ? [
            { address: '0.0.0.0', ipv6Only: false, required: false },
            { address: '::', ipv6Only: true, required: false },
          ]
        : [{ address: '0.0.0.0', ipv6Only: false, required: false }];
  // A wildcard requested as the host is already probed (as `::` dual, which a stack
  // without dual-stack treats as IPv6 only, just like the wildcard it would add).
  return [own, ...wildcards.filter((wildcard) => wildcard.address !== address)];
}

// Process state: found once per process, whichever copy of portlease asks first.
function stackDetection(): { pending: Promise<AddressStack> | undefined } {
  return processSlot('address-stack.v1', () => ({ pending: undefined }));
}

// Where libuv's dual-stack sockets (IPV6_V6ONLY cleared) are known to work.
const DUAL_STACK_PLATFORMS = new Set(['linux', 'darwin', 'win32']);

async function detectStack(): Promise<AddressStack> {
  const server = createServer();
  server.unref();
  // Without a host, libuv binds `::` (dual-stack) and falls back to `0.0.0.0` only without IPv6.
  const listened = await new Promise<BindOutcome>((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      try {
        resolve(classify(error));
      } catch (resourceError) {
        stackDetection().pending = undefined; // not an answer about the machine: detect again next time
        reject(resourceError);
      }
    });
    server.listen({ port: 0, ipv6Only: false, exclusive: true }, () => resolve({ kind: 'free' }));
  });
  if (listened.kind !== 'free' || (server.address() as { family: string }).family !== 'IPv6') {
    server.close();
    return 'ipv4-only';
  }
  try {
    // libuv clears IPV6_V6ONLY itself, so where dual-stack sockets exist, `::` covers IPv4.
    if (DUAL_STACK_PLATFORMS.has(process.platform)) return 'dual';
    const { port } = server.address() as { port: number };
    // If `::` covers IPv4, the IPv4 wildcard on the same port is taken by it.
    const v4 = await bindTcp(port, '0.0.0.0', false);
    return v4.kind === 'busy' ? 'dual' : 'separate';
  } finally {
    await new Promise((resolve) => server.close(resolve));
  }
}

/** How this machine's families share ports; found once per process by two binds on a kernel-chosen port. */
export function addressStack(): Promise<AddressStack> {
  const detection = stackDetection();
  detection.pending ??= detectStack();
  return detection.pending;
}

async function resolveAddress(host: string): Promise<string> {
  if (isIP(host) !== 0) return host;
  try {
    const { lookup } = await import('node:dns/promises');
    return (await lookup(host)).address;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code !== undefined && LOOKUP_ERRORS.has(code)) throw new HostUnavailableError(host, error);
    throw error;
  }
}

async function isFreeIn(bind: typeof bindTcp, port: number, host: string, addresses: readonly ProbeAddress[]): Promise<boolean> {
  // One after another: our own probe on the requested host would otherwise collide with the wildcard probe.
  for (const { address, ipv6Only, required } of addresses) {
    const outcome = await bind(port, address, ipv6Only);
    if (outcome.kind === 'busy') return false;
    if (outcome.kind === 'absent' && required) throw new HostUnavailableError(host, outcome.error);
  }
  return true;
}

/**
 * The ports of `ports` that are not free on `host` in every address family, for the given
 * protocol(s), found by really binding each and closing again, in parallel. Busy
 * (`EADDRINUSE`) and forbidden (`EACCES`, e.g. a privileged port) both mean "not free"; a
 * `host` that is not an address of this machine throws {@link HostUnavailableError}. The
 * probe sockets never keep the process alive. `stack` overrides the detected
 * {@link addressStack} (for tests).
 */
export async function findBusyPorts(
  ports: readonly number[],
  host: string,
  protocol: Protocol = 'tcp',
  stack?: AddressStack,
): Promise<number[]> {
  const address = await resolveAddress(host);
  const addresses = probeAddresses(address, stack ?? (await addressStack()));
  const probe = async (port: number): Promise<boolean> => {
    // TCP and UDP are separate port spaces, so their probes cannot collide with each other.
    const [tcp, udp] = await Promise.all([
      protocol === 'udp' ? true : isFreeIn(bindTcp, port, host, addresses),
      protocol === 'tcp' ? true : isFreeIn(bindUdp, port, host, addresses),
    ]);
    return tcp && udp;
  };
  // In batches: a run of hundreds of ports must not need hundreds of descriptors at once
  // (macOS allows 256 by default).
  const free: boolean[] = [];
  for (let index = 0; index < ports.length; index += PROBE_BATCH) {
    free.push(...(await Promise.all(ports.slice(index, index + PROBE_BATCH).map(probe))));
  }
  return ports.filter((_, index) => !free[index]);
}
