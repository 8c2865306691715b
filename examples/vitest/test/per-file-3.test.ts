import { claimPorts } from 'portlease';
import { expect, test } from 'vitest';
import { startServer, stopServer } from '../server.js';

// A claim for this test file only, given back in `finally` however the test ends.
test('a server of its own on a port claimed for this file', async () => {
  const lease = await claimPorts({ host: '127.0.0.1', label: 'vitest per-file' });
  try {
    const server = await startServer('per-file', lease.port);
    try {
      const response = await fetch(`http://127.0.0.1:${lease.port}/`);
      expect(await response.json()).toEqual({ name: 'per-file', port: lease.port });
    } finally {
      await stopServer(server);
    }
  } finally {
    await lease.release();
  }
});

// The block claimed by worker-ports.ts for the worker running this file.
test('servers on every port of this worker’s block', async () => {
  const ports = process.env.WORKER_PORTS!.split(' ').map(Number);
  expect(ports).toHaveLength(3);
  const servers = await Promise.all(ports.map((port) => startServer('worker', port)));
  try {
    for (const port of ports) expect(await (await fetch(`http://127.0.0.1:${port}/`)).json()).toEqual({ name: 'worker', port });
    console.log(`worker ${process.pid} block ${ports.join(' ')}`);
  } finally {
    await Promise.all(servers.map(stopServer));
  }
});
