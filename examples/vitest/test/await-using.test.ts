import { claimPorts } from 'portlease';
import { expect, test } from 'vitest';
import { startServer, stopServer } from '../server.js';

// The same per-file claim as per-file-*.test.ts with `await using` (TypeScript lowers it for
// Node 20): the lease is released when the block ends, however it ends.
test('a claim released at the end of the scope', async () => {
  let claimed: number;
  {
    await using lease = await claimPorts({ host: '127.0.0.1', label: 'vitest await using' });
    claimed = lease.port;
    const server = await startServer('scoped', lease.port);
    try {
      expect(await (await fetch(`http://127.0.0.1:${lease.port}/`)).json()).toEqual({ name: 'scoped', port: lease.port });
    } finally {
      await stopServer(server);
    }
  }
  const { listClaims } = await import('portlease');
  expect((await listClaims()).some((claim) => claim.ports.includes(claimed))).toBe(false);
});
