import { readFileSync } from 'node:fs';
import { describe, expect } from 'vitest';
import { isPortleaseError, PortAllocator } from '../../src/index.js';
import {
  SkipRuleSet,
  type EphemeralRangeSources,
  IANA_EPHEMERAL_RANGE,
  readEphemeralRange,
  systemEphemeralRange,
  UNSAFE_PORTS,
} from '../../src/ports/port-ranges.js';
import { freeRunBase, hasIPv6, nextBindableRun } from '../helpers/sockets.js';
import { stateTest } from '../helpers/state-dir.js';

const it = stateTest;

const ipv6 = await hasIPv6();

function sources(overrides: Partial<EphemeralRangeSources>): EphemeralRangeSources {
  return {
    platform: 'linux',
    readFile: () => {
      throw new Error('no file');
    },
    sysctl: () => {
      throw new Error('no sysctl');
    },
    ...overrides,
  };
}

describe('readEphemeralRange', () => {
  it('reads Linux’s ip_local_port_range, the BSD/macOS sysctls, else the IANA range', () => {
    expect(readEphemeralRange(sources({ readFile: () => '32768\t60999\n' }))).toEqual([32768, 60999]);
    expect(readEphemeralRange(sources({ platform: 'darwin', sysctl: (names) => (names.length === 2 ? '49152\n65535\n' : '') }))).toEqual([
      49152, 65535,
    ]);
    expect(readEphemeralRange(sources({ platform: 'freebsd', sysctl: () => '10000\n20000\n' }))).toEqual([10000, 20000]);
    expect(readEphemeralRange(sources({ platform: 'win32' }))).toEqual(IANA_EPHEMERAL_RANGE);
  });

  it('falls back to the IANA range when the source is missing or garbled', () => {
    expect(readEphemeralRange(sources({}))).toEqual(IANA_EPHEMERAL_RANGE);
    expect(readEphemeralRange(sources({ readFile: () => 'garbage' }))).toEqual(IANA_EPHEMERAL_RANGE);
    expect(readEphemeralRange(sources({ readFile: () => '60999 32768' }))).toEqual(IANA_EPHEMERAL_RANGE);
    expect(readEphemeralRange(sources({ platform: 'darwin' }))).toEqual(IANA_EPHEMERAL_RANGE);
  });

  it.skipIf(process.platform !== 'linux')('matches /proc/sys/net/ipv4/ip_local_port_range on this machine', () => {
    const [first, last] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    expect(systemEphemeralRange()).toEqual([first, last]);
  });
});

describe('the blocked-port bitmap', () => {
  it('blocks exactly the ephemeral range, the unsafe ports and the exclusions it is given', () => {
    const blocked = new SkipRuleSet({
      ephemeral: [30000, 30009],
      unsafe: true,
      exclude: [
        [100, 100],
        [200, 201],
      ],
    });
    const all = Array.from({ length: 65536 }, (_, port) => port).filter((port) => blocked.has(port));
    const expected = [...UNSAFE_PORTS, 100, 200, 201, ...Array.from({ length: 10 }, (_, i) => 30000 + i)];
    expect(all).toEqual([...new Set(expected)].sort((a, b) => a - b));
    expect(new SkipRuleSet({ ephemeral: undefined, unsafe: false, exclude: [] }).describe(1)).toEqual([]);
  });

  it('knows the browsers’ unsafe ports, including the Fetch standard’s 2024 additions', () => {
    for (const port of [1, 6000, 6665, 6669, 6697, 10080, 4190, 6679, 5060, 989]) expect(UNSAFE_PORTS).toContain(port);
    expect(UNSAFE_PORTS).not.toContain(8080);
  });
});

describe('claims skip excluded and unsafe ports', () => {
  it('never returns an excluded port; the returned run is the next valid one', async ({ allocator }) => {
    const base = await freeRunBase(6);
    const lease = await allocator.claim({ base, count: 2, exclude: [base, [base + 1, base + 2]] });
    expect(lease.ports).toEqual([base + 3, base + 4]);
    // Excluded ports are skipped inside the search, never recorded.
    expect((await allocator.list()).flatMap((claim) => claim.ports)).toEqual([base + 3, base + 4]);
  });

  it('skips 6665–6669 (browser-unsafe) from base 6665, but not with allowUnsafePorts', async ({ allocator }) => {
    const lease = await allocator.claim({ base: 6665 });
    expect(lease.ports).toEqual([await nextBindableRun(6670, 1, ipv6)]);
    await lease.release();
    const allowed = await allocator.claim({ base: 6665, allowUnsafePorts: true });
    expect(allowed.ports).toEqual([await nextBindableRun(6665, 1, ipv6)]);
  });

  it('skips 10080 (browser-unsafe) from base 10080', async ({ allocator }) => {
    const lease = await allocator.claim({ base: 10080 });
    expect(lease.ports).toEqual([await nextBindableRun(10081, 1, ipv6)]);
  });

  it('says which ranges it skipped when nothing fits', async ({ allocator }) => {
    const error = await allocator.claim({ base: 65530, count: 2, exclude: [[65531, 65535]] }).catch((caught: unknown) => caught);
    expect(isPortleaseError(error, 'PORTLEASE_EXHAUSTED')).toBe(true);
    expect((error as Error).message).toContain('excluded ports 65531-65535');
  });
});

describe('claims skip the ephemeral range', () => {
  it('with the range read from this machine: a claim from its first port lands just above it', async ({ allocator }) => {
    const [first, last] = systemEphemeralRange();
    if (last + 2 > 65535) {
      const error = await allocator.claim({ base: first, count: 2 }).catch((caught: unknown) => caught);
      expect(isPortleaseError(error, 'PORTLEASE_EXHAUSTED')).toBe(true);
      expect((error as Error).message).toContain(`ephemeral ports ${first}-${last}`);
      return;
    }
    const lease = await allocator.claim({ base: first, count: 2 });
    const expected = await nextBindableRun(last + 1, 2, ipv6, (port) => UNSAFE_PORTS.includes(port));
    expect(lease.ports).toEqual([expected, expected + 1]);
  });

  it('with the range read from this machine: allowEphemeralPorts hands out ports inside it', async ({ allocator }) => {
    const [first, last] = systemEphemeralRange();
    const lease = await allocator.claim({ base: first, allowEphemeralPorts: true });
    expect(lease.port).toBeGreaterThanOrEqual(first);
    expect(lease.port).toBeLessThanOrEqual(last);
  });

  it('with another range through the ephemeralPortRange seam', async ({ stateDir }) => {
    const base = await freeRunBase(8);
    const seamed = new PortAllocator({ stateDir, ephemeralPortRange: [base + 1, base + 3] });
    expect((await seamed.claim({ base, count: 2 })).ports).toEqual([base + 4, base + 5]);
    expect((await seamed.claim({ base })).ports).toEqual([base]);
    expect((await seamed.claim({ base, allowEphemeralPorts: true })).ports).toEqual([base + 1]);
  });

  it('names the skipped ephemeral range when nothing fits', async ({ stateDir }) => {
    const seamed = new PortAllocator({ stateDir, ephemeralPortRange: [65000, 65535] });
    const error = await seamed.claim({ base: 64990, count: 20 }).catch((caught: unknown) => caught);
    expect(isPortleaseError(error, 'PORTLEASE_EXHAUSTED')).toBe(true);
    expect((error as Error).message).toMatch(
      /No run of 20 consecutive free ports in 64990-65535, after skipping claimed ports, ephemeral ports 65000-65535/,
    );
  });
});
