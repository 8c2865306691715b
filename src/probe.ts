import { createServer } from 'node:net';
import { HostUnavailableError } from './errors.js';

// The address is not this machine's, or does not resolve: no port will ever bind there.
const HOST_ERRORS = new Set(['EADDRNOTAVAIL', 'EAFNOSUPPORT', 'ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EINVAL']);

/**
 * Whether `port` can be bound on `host` right now, found by really listening on it and
 * closing again. Busy (`EADDRINUSE`) and forbidden (`EACCES`, e.g. a privileged port)
 * both mean "not free"; an address this machine does not have throws
 * {@link HostUnavailableError}. The probe socket never keeps the process alive.
 */
export function probePort(port: number, host: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', (error: NodeJS.ErrnoException) => {
      server.close();
      if (error.code !== undefined && HOST_ERRORS.has(error.code)) reject(new HostUnavailableError(host, error));
      else resolve(false);
    });
    // exclusive: never share a handle with a cluster primary, which would hide a conflict.
    server.listen({ port, host, exclusive: true }, () => {
      server.close(() => resolve(true));
    });
  });
}

/** The ports of `ports` that cannot be bound on `host` now (probed in parallel). */
export async function findBusyPorts(ports: readonly number[], host: string): Promise<number[]> {
  const free = await Promise.all(ports.map((port) => probePort(port, host)));
  return ports.filter((_, index) => !free[index]);
}
