import { expect, inject, test } from 'vitest';

// The server of global-setup.ts, seen by every worker through inject().
test('the shared server answers on the provided port', async () => {
  const port = inject('sharedPort');
  const response = await fetch(`http://127.0.0.1:${port}/`);
  expect(await response.json()).toEqual({ name: 'shared', port });
});
