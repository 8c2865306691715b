// A CommonJS config cannot await a claim, so `portlease exec` claims before the runner
// starts (see package.json) and hands the port to it, and through it to every worker and to
// the webServer, as PORT in the environment. The claim belongs to the runner and is given
// back when the run ends.
const { defineConfig } = require('@playwright/test');

const port = Number(process.env.PORT);

module.exports = defineConfig({
  testDir: 'tests',
  workers: 3,
  fullyParallel: true,
  reporter: 'list',
  use: { baseURL: `http://127.0.0.1:${port}` },
  webServer: { command: 'node server.js', url: `http://127.0.0.1:${port}/health`, reuseExistingServer: false },
});
