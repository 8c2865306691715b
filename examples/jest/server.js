const { createServer } = require('node:http');

/** The server under test: answers every request with its name and port. */
function startServer(name, port) {
  const server = createServer((request, response) => response.end(JSON.stringify({ name, port })));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** Closes a server. */
function stopServer(server) {
  return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
}

module.exports = { startServer, stopServer };
