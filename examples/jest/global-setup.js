const { claimPorts } = require('portlease');
const { startServer } = require('./server.js');

// Runs once in the jest process before the workers start; the workers inherit its
// environment, so SHARED_PORT reaches every test file.
module.exports = async function globalSetup() {
  const lease = await claimPorts({ host: '127.0.0.1', label: 'jest shared server' });
  process.env.SHARED_PORT = String(lease.port);
  // globalTeardown runs in this same process: globalThis carries what it must stop.
  globalThis.sharedServer = { lease, server: await startServer('shared', lease.port) };
};
