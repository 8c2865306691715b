// The server under test: answers every request with the port it listens on.
import { createServer } from 'node:http';

/** Starts the server on `port` (127.0.0.1); resolves once it listens. */
export function startServer(port) {
  const server = createServer((request, response) => response.end(JSON.stringify({ port })));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}
