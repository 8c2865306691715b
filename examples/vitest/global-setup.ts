import { claimPorts } from 'portlease';
import type { TestProject } from 'vitest/node';
import { startServer, stopServer } from './server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    sharedPort: number;
  }
}

// Runs once, in the main vitest process, before any worker starts.
export default async function setup(project: TestProject) {
  const lease = await claimPorts({ host: '127.0.0.1', label: 'vitest shared server' });
  const server = await startServer('shared', lease.port);
  project.provide('sharedPort', lease.port);
  return async () => {
    try {
      await stopServer(server);
    } finally {
      await lease.release();
    }
  };
}
