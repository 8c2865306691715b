import { createServer, type Server } from 'node:http';

/** The server under test: answers every request with its name and port. */
export function startServer(name: string, port: number): Promise<Server> {
  const server = createServer((request, response) => response.end(JSON.stringify({ name, port })));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** Closes a server. */
export function stopServer(server: Server | undefined): Promise<void> {
  return new Promise((resolve) => (server === undefined ? resolve() : server.close(() => resolve())));
}
