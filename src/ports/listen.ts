import { createServer, type Server } from 'node:net';
import { UnsupportedError } from '../base/errors.js';

/** Listening sockets on claimed ports, to hand to a child process with no window between claim and bind. */
export interface ListeningSockets extends AsyncDisposable {
  /** One listening server per port, in the order of the ports. */
  readonly servers: readonly Server[];
  /**
   * The servers' file descriptors, to put in `spawn`'s `stdio` at 3, 4, ... (the
   * socket-activation convention). Unix only: the sockets are switched to blocking mode, as
   * inetd and most programs that take an inherited socket expect (Node sets its own mode).
   *
   * @throws {UnsupportedError} (`PORTLEASE_UNSUPPORTED`) on Windows, where a socket cannot be
   * inherited as a numbered descriptor (it would need `WSADuplicateSocket`, which Node does not expose).
   */
  fds(): number[];
  /**
   * `LISTEN_FDS` and `LISTEN_FDNAMES` (`names` joined by `:`) for the child's environment.
   * `LISTEN_PID` must be the child's own PID, which only the child knows before it runs
   * your program: set it in a shell wrapper (`sh -c 'LISTEN_PID=$$; export LISTEN_PID; exec "$@"'`).
   */
  env(names: readonly string[]): Record<string, string>;
  /**
   * Closes this process's copies of the sockets. Call it once the child has been spawned:
   * the child's copies stay open, and this process must not accept its connections.
   */
  close(): Promise<void>;
}

function listenOne(port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    // This process never serves: a connection it accepts before the child takes over is reset.
    const server = createServer({ pauseOnConnect: true }, (socket) => socket.destroy());
    server.once('error', reject);
    // exclusive: never share the handle with cluster workers.
    server.listen({ port, host, exclusive: true }, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function closeOne(server: Server): Promise<void> {
  return new Promise((resolve) => (server.listening ? server.close(() => resolve()) : resolve()));
}

/** The descriptor of a listening server (Unix). */
function fdOf(server: Server): number {
  const handle = (server as unknown as { _handle?: { fd?: number; setBlocking?: (blocking: boolean) => number } })._handle;
  if (handle?.fd === undefined || handle.fd < 0) throw new UnsupportedError('This server has no file descriptor to hand over.');
  handle.setBlocking?.(true);
  return handle.fd;
}

/**
 * Listens on every port of `ports` on `host` and returns the listening sockets. Rejects with
 * the listen error (`EADDRINUSE` when a process outside portlease bound a port since the
 * probe); what was opened is closed again.
 */
export async function listenOn(ports: readonly number[], host: string): Promise<ListeningSockets> {
  const results = await Promise.allSettled(ports.map((port) => listenOne(port, host)));
  const servers = results.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const failed = results.find((result) => result.status === 'rejected');
  if (failed !== undefined) {
    await Promise.all(servers.map(closeOne));
    throw failed.reason;
  }
  const close = async (): Promise<void> => void (await Promise.all(servers.map(closeOne)));
  return {
    servers,
    fds: () => {
      if (process.platform === 'win32') {
        throw new UnsupportedError(
          'Listening sockets cannot be handed to a child process as file descriptors on Windows (that takes WSADuplicateSocket, which Node does not expose). Use the servers in this process, or let the child bind the claimed ports itself.',
        );
      }
      return servers.map(fdOf);
    },
    env: (names) => ({ LISTEN_FDS: String(servers.length), LISTEN_FDNAMES: names.join(':') }),
    close,
    [Symbol.asyncDispose]: close,
  };
}
