import { defineConfig } from '@playwright/test';
import { claimOnce } from 'portlease';

// Playwright evaluates this file in the runner and again in every worker. claimOnce claims
// in the runner, the first of them, and hands the same port to the workers (and to the
// webServer command) through the environment; the runner holds the claim until it exits.
const { port } = await claimOnce('playwright_web', { host: '127.0.0.1', label: 'playwright web' });

export default defineConfig({
  testDir: 'tests',
  workers: 3,
  fullyParallel: true,
  reporter: 'list',
  use: { baseURL: `http://127.0.0.1:${port}` },
  webServer: {
    command: 'node server.js',
    env: { PORT: String(port) },
    url: `http://127.0.0.1:${port}/health`,
    reuseExistingServer: false,
  },
});
