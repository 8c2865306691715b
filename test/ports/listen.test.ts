import { spawn } from 'node:child_process';
import { describe, expect } from 'vitest';
import { PortAllocator } from '../../src/index.js';
import { exited } from '../helpers/processes.js';
import { canBind, close, listen } from '../helpers/sockets.js';
import { stateTest } from '../helpers/state-dir.js';

const it = stateTest;

describe('lease.listen()', () => {
  it.skipIf(process.platform === 'win32')('listens on every port and hands the sockets to a child as fds 3 and 4', async ({ stateDir }) => {
    const allocator = new PortAllocator({ stateDir });
    await using lease = await allocator.claim({ count: 2, host: '127.0.0.1' });
    const sockets = await lease.listen();
    // Held from now on: nobody else can bind them.
    expect(await canBind(lease.ports[0]!, '127.0.0.1')).toBe(false);
    expect(sockets.env(['api', 'metrics'])).toEqual({ LISTEN_FDS: '2', LISTEN_FDNAMES: 'api:metrics' });
    const script = `const net = require('node:net');
      setTimeout(() => process.exit(70), 20000).unref();
      const ports = [];
      for (const fd of [3, 4]) {
        const server = net.createServer((socket) => socket.end(String(server.address().port)));
        server.listen({ fd }, () => {
          ports.push(server.address().port);
          if (ports.length < 2) return;
          net.connect(ports[1], '127.0.0.1').on('data', (data) => { console.log(ports.join(' ') + ' ' + data + ' ' + (process.env.LISTEN_PID === String(process.pid))); process.exit(0); });
        });
      }`;
    const child = spawn('/bin/sh', ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"', 'sh', process.execPath, '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe', ...sockets.fds()],
      env: { ...process.env, ...sockets.env(['api', 'metrics']) },
    });
    await sockets.close();
    const result = await exited(child);
    expect(result.stderr).toBe('');
    const [first, second, answered, pidOk] = result.stdout.trim().split(' ');
    expect(pidOk).toBe('true');
    expect([Number(first), Number(second)].sort()).toEqual([...lease.ports]);
    expect(Number(answered)).toBe(lease.ports[1]);
    // The child is gone and this process closed its copies: the ports can be bound again, still claimed.
    expect(await canBind(lease.ports[0]!, '127.0.0.1')).toBe(true);
    expect(await allocator.list()).toMatchObject([{ ports: [...lease.ports] }]);
  });

  it('rejects with EADDRINUSE when a port is taken, closing what it opened', async ({ stateDir }) => {
    const allocator = new PortAllocator({ stateDir });
    await using lease = await allocator.claim({ count: 2, host: '127.0.0.1' });
    // A program outside portlease binds the second port after the probe.
    const squatter = await listen(lease.ports[1]!, '127.0.0.1');
    try {
      await expect(lease.listen()).rejects.toMatchObject({ code: 'EADDRINUSE' });
      expect(await canBind(lease.ports[0]!, '127.0.0.1')).toBe(true);
    } finally {
      await close(squatter);
    }
  });
});
