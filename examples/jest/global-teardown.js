const { stopServer } = require('./server.js');

module.exports = async function globalTeardown() {
  const { lease, server } = globalThis.sharedServer;
  try {
    await stopServer(server);
  } finally {
    await lease.release();
  }
};
