import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // One server for the whole run, started before any worker: its port reaches the tests
    // through provide/inject.
    globalSetup: ['./global-setup.ts'],
    // One block of ports per worker process, claimed by the first test file it runs.
    setupFiles: ['./worker-ports.ts'],
    pool: 'forks',
    maxWorkers: 3,
  },
});
