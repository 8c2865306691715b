import { join } from 'node:path';
import { describe, expect } from 'vitest';
import { PortAllocator } from '../../src/index.js';
import { markLocalPorts, procNetSource, SocketTable, type SocketTableSource } from '../../src/ports/socket-table.js';
import { bindWithoutReuseAddr, hasPython, serveWithPython } from '../helpers/python.js';
import { canBind, close, freeRunBase, holdInTimeWait, listen, tcpStates } from '../helpers/sockets.js';
import { stateTest } from '../helpers/state-dir.js';

const it = stateTest;

const linux = process.platform === 'linux';

const SAMPLE_TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:4E20 0100007F:D431 06 00000000:00000000 03:00000F9C 00000000     0        0 0 3 0000000000000000
  12: 0100007F:D431 0100007F:4E21 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1`;
const SAMPLE_TCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:FFFF 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:2710 00000000000000000000000001000000:A000 08 00000000:00000000 00:00000000 00000000     0        0 4 1 0000000000000000 20 4 30 10 -1`;

describe('markLocalPorts', () => {
  it('marks the local port of every row but listeners, and nothing else', () => {
    const ports = new Uint8Array(65536);
    markLocalPorts(SAMPLE_TCP, ports);
    markLocalPorts(SAMPLE_TCP6, ports);
    const marked = [...ports.keys()].filter((port) => ports[port] === 1);
    // 20000 TIME_WAIT, 54321 ESTABLISHED (a client's local port), 10000 CLOSE_WAIT on ::1;
    // not the listeners 8080 and 65535 (the bind probe's job), never the remote 20001.
    expect(marked).toEqual([10000, 20000, 54321]);
  });

  it('reads an empty table (header only) as no ports', () => {
    const ports = new Uint8Array(65536);
    markLocalPorts(SAMPLE_TCP.split('\n')[0]!, ports);
    expect(ports.some((value) => value === 1)).toBe(false);
  });
});

describe('SocketTable cache', () => {
  function fakeSource(): SocketTableSource & { value: string | undefined; table: string; reads: number } {
    return {
      value: 'a',
      table: SAMPLE_TCP,
      reads: 0,
      signal() {
        return this.value;
      },
      tables() {
        this.reads++;
        return [this.table];
      },
    };
  }

  it('reads the tables once while the signal stays the same, again when it moves or the snapshot is old', () => {
    const source = fakeSource();
    let now = 0;
    const table = new SocketTable({ source, maxAgeMs: 1000, now: () => now });
    expect(table.portsInUse()![20000]).toBe(1);
    table.portsInUse();
    now = 999;
    table.portsInUse();
    expect(source.reads).toBe(1);
    source.value = 'b';
    source.table = SAMPLE_TCP6;
    const fresh = table.portsInUse()!;
    expect(source.reads).toBe(2);
    expect([fresh[20000], fresh[10000]]).toEqual([0, 1]);
    now = 999 + 1000;
    table.portsInUse();
    expect(source.reads).toBe(3);
  });

  it('re-reads after any new passive open; after active opens only when ephemeral ports may be handed out', () => {
    const source = fakeSource();
    source.value = '10/20';
    let now = 0;
    const table = new SocketTable({ source, maxAgeMs: 5000, now: () => now });
    table.portsInUse('passive');
    now = 1;
    // Outgoing connections take ephemeral ports, which a default search never hands out.
    source.value = '11/20';
    table.portsInUse('passive');
    expect(source.reads).toBe(1);
    table.portsInUse('all');
    expect(source.reads).toBe(2);
    // An accepted connection may hold any port: re-read at once, however young the copy.
    source.value = '11/21';
    table.portsInUse('passive');
    expect(source.reads).toBe(3);
    expect(table.cachedPortsInUse('passive')).not.toBeNull();
    source.value = '11/22';
    expect(table.cachedPortsInUse('passive')).toBeNull();
  });

  it('shares what it parsed through the cache file: a fresh table with the same signal reads no table', ({ stateDir }) => {
    const cacheFile = join(stateDir, 'sockets.json');
    const first = fakeSource();
    const ports = new SocketTable({ source: first, cacheFile }).portsInUse()!;
    const second = fakeSource();
    const shared = new SocketTable({ source: second, cacheFile }).portsInUse()!;
    expect(second.reads).toBe(0);
    expect([...shared.keys()].filter((port) => shared[port] === 1)).toEqual([...ports.keys()].filter((port) => ports[port] === 1));
    expect(shared[20000]).toBe(1);
    // Once the signal moves, the file is no longer current.
    second.value = 'moved';
    new SocketTable({ source: second, cacheFile }).portsInUse();
    expect(second.reads).toBe(1);
  });

  it('reports no table where the platform has none', () => {
    const source = fakeSource();
    source.value = undefined;
    expect(new SocketTable({ source }).portsInUse()).toBeUndefined();
    expect(source.reads).toBe(0);
  });

  it.skipIf(!linux)('sees a new connection on the real machine through the signal alone', async () => {
    const before = procNetSource.signal();
    expect(before).toMatch(/^\d+\/\d+\/net:\[\d+\]$/);
    const server = await listen(0);
    const { port } = server.address() as { port: number };
    const { connect } = await import('node:net');
    const client = connect(port, '127.0.0.1');
    await new Promise((resolve) => client.once('connect', resolve));
    try {
      expect(procNetSource.signal()).not.toBe(before);
      const table = new SocketTable();
      expect(table.portsInUse()![port]).toBe(1);
      expect(table.portsInUse()![client.localPort!]).toBe(1);
    } finally {
      client.destroy();
      await close(server);
    }
  });
});

describe.skipIf(!linux)('TIME_WAIT', () => {
  it('a claim from a port in TIME_WAIT skips it (Node’s probe alone would not), and python can serve what it returns', async ({
    stateDir,
  }) => {
    const base = await freeRunBase(4);
    await holdInTimeWait(base);
    // The fixture really is the blind spot: only TIME_WAIT is left, Node binds, a plain bind does not.
    expect(tcpStates(base)).toEqual(['06']);
    expect(await canBind(base, '127.0.0.1')).toBe(true);
    if (hasPython()) expect(bindWithoutReuseAddr(base)).toBe('98');

    const lease = await new PortAllocator({ stateDir }).claim({ base, count: 2, host: '127.0.0.1' });
    expect(lease.ports).toEqual([base + 1, base + 2]);
    if (hasPython()) for (const port of lease.ports) await serveWithPython(port);

    // Without the socket table, the bind probe alone hands the TIME_WAIT port out.
    await lease.release();
    const blind = await new PortAllocator({ stateDir, socketTable: false }).claim({ base, host: '127.0.0.1' });
    expect(blind.ports).toEqual([base]);
  });

  it('a port put in TIME_WAIT right after a claim read the table is skipped by the next claim (no refresh window)', async ({
    stateDir,
  }) => {
    const allocator = new PortAllocator({ stateDir });
    // The test suite's loop: claim, serve, close the connections server-side, claim again.
    for (let round = 0; round < 3; round++) {
      const base = await freeRunBase(3);
      const first = await allocator.claim({ base, host: '127.0.0.1' });
      expect(first.ports).toEqual([base]);
      await first.release();
      await holdInTimeWait(base);
      expect(tcpStates(base)).toEqual(['06']);
      const next = await allocator.claim({ base, host: '127.0.0.1' });
      expect(next.ports).toEqual([base + 1]);
      if (hasPython()) expect(bindWithoutReuseAddr(base)).toBe('98');
      await next.release();
    }
  });
});
