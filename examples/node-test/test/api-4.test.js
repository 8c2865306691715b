// Each test file runs in a process of its own (up to 4 at once with --test-concurrency=4);
// each claims its own ports, so no two files ever start a server on the same port.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { claimPorts } from 'portlease';
import { startServer } from '../server.js';

let lease;
let server;

before(async () => {
  lease = await claimPorts({ count: 2, host: '127.0.0.1', label: `node-test ${import.meta.filename}` });
  server = await startServer(lease.ports[0]);
});

after(async () => {
  // try/finally in spirit: the claim is released even if closing the server fails.
  try {
    await new Promise((resolve) => server?.close(resolve));
  } finally {
    await lease?.release();
  }
});

test('the server answers on the claimed port', async () => {
  const response = await fetch(`http://127.0.0.1:${lease.ports[0]}/`);
  assert.deepEqual(await response.json(), { port: lease.ports[0] });
  console.log(`pid ${process.pid} served on ${lease.ports[0]}, spare ${lease.ports[1]}`);
});
