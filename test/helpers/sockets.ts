// Sockets for tests: listening, checking a port, finding a free run, UDP, TIME_WAIT.
import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import { connect, createServer, isIP, type Server } from 'node:net';
import { tokensInUse } from '../../src/ports/port-tokens.js';
import { markLocalPorts } from '../../src/ports/socket-table.js';

/** Listens on `port` (0 = any) and `host`; resolves to the server. */
export function listen(port: number, host = '127.0.0.1', ipv6Only = false): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ port, host, ipv6Only }, () => resolve(server));
  });
}

/** Closes a server. */
export function close(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Whether `port` can be listened on `host` right now. */
export async function canBind(port: number, host = '0.0.0.0'): Promise<boolean> {
  try {
    await close(await listen(port, host));
    return true;
  } catch {
    return false;
  }
}

/** Ports some local TCP socket other than a listener uses (TIME_WAIT, ...), as the allocator's socket table sees them. */
function socketTablePorts(): Uint8Array {
  const ports = new Uint8Array(65536);
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (existsSync(file)) markLocalPorts(readFileSync(file, 'latin1'), ports);
  }
  return ports;
}

/**
 * A port with `span` ports from it that are bindable on 0.0.0.0, that no local socket uses
 * (a TIME_WAIT left by an earlier test would make the allocator skip it) and whose port
 * tokens nobody holds (a claim of a test file running at the same time, through another state
 * directory). Each vitest worker draws from a band of its own, so that files running at once
 * rarely meet.
 */
export async function freeRunBase(span: number): Promise<number> {
  const inUse = socketTablePorts();
  const tokens = tokensInUse().ports;
  for (const port of tokens) inUse[port] = 1;
  const worker = Number(process.env.VITEST_POOL_ID ?? 1) || 1;
  const band = 4000;
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + ((worker - 1) % 4) * band + Math.floor(Math.random() * (band - span));
    if (Array.from({ length: span + 1 }, (_, i) => inUse[base + i]).some(Boolean)) continue;
    const checks = await Promise.all(Array.from({ length: span }, (_, i) => canBind(base + i)));
    if (checks.every(Boolean)) return base;
  }
  throw new Error('no free run found for the test');
}

/** Whether this machine can listen on IPv6 loopback (IPv6 cases are skipped where it cannot). */
export async function hasIPv6(): Promise<boolean> {
  try {
    await close(await listen(0, '::1', true));
    return true;
  } catch {
    return false;
  }
}

/** A UDP socket bound to `port` on `address`. */
export function bindUdp(port: number, address: string, ipv6Only = false): Promise<DgramSocket> {
  return new Promise((resolve, reject) => {
    const socket = createSocket({ type: isIP(address) === 6 ? 'udp6' : 'udp4', ipv6Only });
    socket.once('error', reject);
    socket.bind({ port, address }, () => resolve(socket));
  });
}

/** Closes a UDP socket. */
export function closeUdp(socket: DgramSocket): Promise<void> {
  return new Promise((resolve) => socket.close(() => resolve()));
}

/** TCP states (`/proc/net/tcp{,6}` hex codes, e.g. `06` = TIME_WAIT) of local sockets on `port`; Linux only. */
export function tcpStates(port: number): string[] {
  const states: string[] = [];
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    if (!existsSync(file)) continue;
    for (const line of readFileSync(file, 'latin1').split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields[1]?.endsWith(`:${hexPort}`)) states.push(fields[3]!);
    }
  }
  return states;
}

/**
 * Leaves `port` in TIME_WAIT on `host`: accepts one connection and closes it from the
 * server side first (the side that closes first keeps the TIME_WAIT), then closes the
 * listener. Resolves once the kernel lists the socket in TIME_WAIT (Linux).
 */
export async function holdInTimeWait(port: number, host = '127.0.0.1'): Promise<void> {
  const server = await listen(port, host);
  const accepted = new Promise<void>((resolve) =>
    server.once('connection', (socket) => {
      socket.destroy();
      resolve();
    }),
  );
  const client = connect(port, host);
  client.on('error', () => {});
  const clientClosed = new Promise((resolve) => client.once('close', resolve));
  await accepted;
  await clientClosed;
  await close(server);
  for (let waited = 0; process.platform === 'linux' && !tcpStates(port).includes('06'); waited += 10) {
    if (waited > 5000) throw new Error(`port ${port} did not enter TIME_WAIT`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Whether nothing listens on `port` in either family (a dual-stack bind, else IPv4 only): a test oracle. */
export async function bindableEverywhere(port: number, ipv6: boolean): Promise<boolean> {
  return ipv6 ? canBind(port, '::') : canBind(port, '0.0.0.0');
}

/** The first port at or above `from` that starts `count` ports bindable everywhere and not in `skip`. */
export async function nextBindableRun(
  from: number,
  count: number,
  ipv6: boolean,
  skip: (port: number) => boolean = () => false,
): Promise<number> {
  for (let start = from; start + count - 1 <= 65535; start++) {
    let ok = true;
    for (let port = start; port < start + count && ok; port++) ok = !skip(port) && (await bindableEverywhere(port, ipv6));
    if (ok) return start;
  }
  throw new Error(`no bindable run of ${count} from ${from}`);
}
