import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect } from 'vitest';
import { HostUnavailableError, isPortleaseError, PortAllocator } from '../../src/index.js';
import { type AddressStack, findBusyPorts, probeAddresses } from '../../src/ports/probe.js';
import { canRunAsNobody, NOBODY_SKIP_REASON, nobodyReadableCopy, removeNobodyReadableCopy } from '../helpers/nobody.js';
import { distEntry, exited, fixturesDir, killAll, nextMessage } from '../helpers/processes.js';
import { hasPython, serveWithPython } from '../helpers/python.js';
import { bindUdp, canBind, close, closeUdp, freeRunBase, hasIPv6, listen, nextBindableRun } from '../helpers/sockets.js';
import { stateTest, storedClaims } from '../helpers/state-dir.js';

const it = stateTest;

// The copy of the build that nobody reads (made when the tests below check whether they can run).
afterAll(removeNobodyReadableCopy);

const ipv6 = await hasIPv6();

// [listener address, ipv6Only, needs IPv6]
const listeners: Array<[string, boolean, boolean]> = [
  ['::1', true, true],
  ['::', true, true],
  ['127.0.0.1', false, false],
  ['0.0.0.0', false, false],
];

describe('a claim never returns a port some TCP listener holds, in either family', () => {
  for (const [address, ipv6Only, needsIPv6] of listeners) {
    for (const host of ['0.0.0.0', '127.0.0.1']) {
      for (const socketTable of [false, true]) {
        // The socket table leaves listeners to the probe; both settings must see them.
        const via = socketTable ? 'default settings' : 'socketTable off';
        it.skipIf(needsIPv6 && !ipv6)(
          `listener on ${address}${ipv6Only ? ' (ipv6Only)' : ''}, host ${host}, ${via}`,
          async ({ stateDir }) => {
            const base = await freeRunBase(4);
            const blocker = await listen(base, address, ipv6Only);
            try {
              const allocator = new PortAllocator({ stateDir, socketTable });
              const lease = await allocator.claim({ base, count: 2, host });
              expect(lease.ports).toEqual([base + 1, base + 2]);
            } finally {
              await close(blocker);
            }
          },
        );
      }
    }
  }
});

describe('probe addresses', () => {
  it('adds the dual-stack wildcard where it covers both families', () => {
    expect(probeAddresses('127.0.0.1', 'dual')).toEqual([
      { address: '127.0.0.1', ipv6Only: false, required: true },
      { address: '::', ipv6Only: false, required: false },
    ]);
    expect(probeAddresses('::', 'dual')).toEqual([{ address: '::', ipv6Only: false, required: true }]);
    // The IPv4 wildcard is covered by the dual-stack one: one bind instead of two.
    expect(probeAddresses('0.0.0.0', 'dual')).toEqual([{ address: '::', ipv6Only: false, required: true }]);
  });

  it('falls back to each family’s wildcard without dual-stack, and to IPv4 alone without IPv6', () => {
    expect(probeAddresses('::1', 'separate').map((probe) => [probe.address, probe.ipv6Only])).toEqual([
      ['::1', false],
      ['0.0.0.0', false],
      ['::', true],
    ]);
    expect(probeAddresses('0.0.0.0', 'separate').map((probe) => probe.address)).toEqual(['0.0.0.0', '::']);
    expect(probeAddresses('127.0.0.1', 'ipv4-only').map((probe) => probe.address)).toEqual(['127.0.0.1', '0.0.0.0']);
    expect(probeAddresses('0.0.0.0', 'ipv4-only').map((probe) => probe.address)).toEqual(['0.0.0.0']);
  });

  // The fallback plans, run for real on this (dual-stack) machine: they must see every listener too.
  const stacks: AddressStack[] = ipv6 ? ['dual', 'separate'] : ['ipv4-only'];
  for (const stack of stacks) {
    it(`with the '${stack}' plan, finds every listener busy and the ports around it free`, async () => {
      const base = await freeRunBase(3);
      for (const [address, ipv6Only, needsIPv6] of listeners) {
        if (needsIPv6 && !ipv6) continue;
        const blocker = await listen(base + 1, address, ipv6Only);
        try {
          expect(await findBusyPorts([base, base + 1, base + 2], '127.0.0.1', 'tcp', stack), address).toEqual([base + 1]);
        } finally {
          await close(blocker);
        }
      }
    });
  }

  it('leaves no socket open: every probed port binds again at once, and a probing process exits by itself', async () => {
    const base = await freeRunBase(3);
    expect(await findBusyPorts([base, base + 1, base + 2], '0.0.0.0', 'both')).toEqual([]);
    for (let port = base; port < base + 3; port++) expect(await canBind(port)).toBe(true);
    const child = spawn(process.execPath, [join(fixturesDir, 'probe-then-idle.mjs'), String(base)], {
      env: { ...process.env, PORTLEASE_DIST: distEntry },
      stdio: 'ignore',
    });
    try {
      const started = Date.now();
      const { code } = await exited(child, 10_000);
      expect(code).toBe(0);
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      killAll([child]);
    }
  });
});

describe('UDP', () => {
  it("skips a port held by a UDP socket with protocol 'udp' and 'both', not with 'tcp'", async ({ stateDir }) => {
    const base = await freeRunBase(3);
    const socket = await bindUdp(base, '0.0.0.0');
    try {
      const allocator = new PortAllocator({ stateDir });
      expect((await allocator.claim({ base, protocol: 'udp' })).ports).toEqual([base + 1]);
      expect((await allocator.claim({ base, protocol: 'both' })).ports).toEqual([base + 2]);
      // TCP and UDP are separate port spaces: the UDP socket does not make the port busy for TCP.
      expect((await allocator.claim({ base, protocol: 'tcp' })).ports).toEqual([base]);
    } finally {
      await closeUdp(socket);
    }
  });

  it.skipIf(!ipv6)("sees a UDP socket on ::1 (ipv6Only) with protocol 'both' on host 127.0.0.1", async ({ stateDir }) => {
    const base = await freeRunBase(2);
    const socket = await bindUdp(base, '::1', true);
    try {
      const lease = await new PortAllocator({ stateDir }).claim({ base, count: 1, host: '127.0.0.1', protocol: 'both' });
      expect(lease.ports).toEqual([base + 1]);
    } finally {
      await closeUdp(socket);
    }
  });
});

describe('hosts', () => {
  const foreign = ['192.0.2.1', ...(ipv6 ? ['2001:db8::1'] : [])];
  for (const host of foreign) {
    it(`refuses host ${host}, which is not this machine's, with PORTLEASE_HOST_UNAVAILABLE and leaves no claim`, async ({ stateDir }) => {
      const allocator = new PortAllocator({ stateDir });
      const base = await freeRunBase(1);
      const before = await allocator.claim({ base });
      const claimsBefore = storedClaims(allocator.stateFile);
      const error = await allocator.claim({ base, host }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(HostUnavailableError);
      expect(isPortleaseError(error, 'PORTLEASE_HOST_UNAVAILABLE')).toBe(true);
      expect((error as Error).message).toContain(host);
      // The tentative claim was recorded and dropped again: the claims are as they were.
      expect(storedClaims(allocator.stateFile)).toEqual(claimsBefore);
      await before.release();
    });
  }

  it('claims on a host name (localhost), probing the address it resolves to', async ({ stateDir }) => {
    const base = await freeRunBase(3);
    const blocker = await listen(base, '127.0.0.1');
    try {
      const lease = await new PortAllocator({ stateDir, socketTable: false }).claim({ base, count: 2, host: 'localhost' });
      expect(lease.ports).toEqual([base + 1, base + 2]);
      expect(lease.host).toBe('localhost');
    } finally {
      await close(blocker);
    }
  });
});

// Root may bind anything, so there the fixture runs as nobody; elsewhere as the current user.
const isRoot = process.getuid?.() === 0;
const eaccesRunnable = !isRoot || canRunAsNobody();
describe.skipIf(!eaccesRunnable)(`EACCES${eaccesRunnable ? '' : ` (${NOBODY_SKIP_REASON})`}`, () => {
  const asNobody = isRoot ? { uid: 65534, gid: 65534 } : {};

  async function runUnprivileged(args: string[]): Promise<{ skip?: string; ports?: number[]; error?: { code: string; message: string } }> {
    // As nobody, from a copy nobody can read: the checkout may be private.
    const code = isRoot ? nobodyReadableCopy() : { distEntry, fixturesDir };
    const child = spawn(process.execPath, [join(code.fixturesDir, 'claim-unprivileged.mjs'), ...args], {
      env: { ...process.env, PORTLEASE_DIST: code.distEntry, TMPDIR: tmpdir() },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      ...asNobody,
    });
    try {
      return await nextMessage(child, 20_000);
    } finally {
      killAll([child]);
    }
  }

  it.skipIf(process.platform === 'win32')('skips ports that fail with EACCES and returns the next valid one', async ({ skip }) => {
    const result = await runUnprivileged(['1020']);
    if (result.skip !== undefined) skip(result.skip);
    expect(result.error).toBeUndefined();
    expect(result.ports).toEqual([await nextBindableRun(1024, 1, ipv6)]);
  });

  it.skipIf(process.platform === 'win32')('ends with PORTLEASE_EXHAUSTED, not a crash, when only EACCES ports remain', async ({ skip }) => {
    const result = await runUnprivileged(['1020', '1024']);
    if (result.skip !== undefined) skip(result.skip);
    expect(result.error?.code).toBe('PORTLEASE_EXHAUSTED');
    expect(result.error?.message).toContain('4 ports were busy');
  });
});

describe.skipIf(!hasPython())('claimed ports can really be served', () => {
  it('python3 -m http.server (no SO_REUSEADDR) serves on every port of a default claim', async ({ stateDir }) => {
    const base = await freeRunBase(3);
    const lease = await new PortAllocator({ stateDir }).claim({ base, count: 3 });
    for (const port of lease.ports) await serveWithPython(port);
  });
});
