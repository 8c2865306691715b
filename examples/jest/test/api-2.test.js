const { claimPorts } = require('portlease');
const { startServer, stopServer } = require('../server.js');

test('the shared server of globalSetup answers', async () => {
  const port = Number(process.env.SHARED_PORT);
  const response = await fetch(`http://127.0.0.1:${port}/`);
  expect(await response.json()).toEqual({ name: 'shared', port });
});

// A claim for one test, given back in `finally` however the test ends.
test('a server of its own on a port claimed for this test', async () => {
  const lease = await claimPorts({ host: '127.0.0.1', label: 'jest per-test' });
  try {
    const server = await startServer('per-test', lease.port);
    try {
      const response = await fetch(`http://127.0.0.1:${lease.port}/`);
      expect(await response.json()).toEqual({ name: 'per-test', port: lease.port });
      console.log(`worker ${process.env.JEST_WORKER_ID} (pid ${process.pid}) served on ${lease.port}`);
    } finally {
      await stopServer(server);
    }
  } finally {
    await lease.release();
  }
});
