import { expect, test } from '@playwright/test';
import { claimOnce, listClaims } from 'portlease';

// API tests through the `request` fixture: no browser is needed.
for (const path of ['/', '/users', '/orders', '/health']) {
  test(`GET ${path} reaches the webServer on the claimed port`, async ({ request, baseURL }) => {
    const response = await request.get(path);
    expect(response.ok()).toBe(true);
    const body = await response.json();
    expect(body.path).toBe(path);
    expect(`http://127.0.0.1:${body.port}`).toBe(baseURL);
  });
}

test('every worker sees the one claim the runner made', async () => {
  // In a worker, claimOnce only reads what the runner (this worker's parent) claimed.
  const lease = await claimOnce('playwright_web');
  expect(lease.pid).toBe(process.ppid);
  const claims = await listClaims();
  expect(claims.filter((claim) => claim.label === 'playwright web')).toHaveLength(1);
  console.log(`worker ${test.info().parallelIndex} (pid ${process.pid}) uses port ${lease.port} claimed by pid ${lease.pid}`);
});
