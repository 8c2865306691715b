import { type ChildProcess, fork, spawn, spawnSync } from 'node:child_process';
import { createSocket, type Socket as DgramSocket } from 'node:dgram';
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { connect, createServer, isIP, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { tokensInUse } from '../src/ports/port-tokens.js';
import { markLocalPorts } from '../src/ports/socket-table.js';
import { type ClaimRecord, StateStore } from '../src/store/store.js';

/** A fresh private state directory; removed by the returned cleanup. */
export function makeStateDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'portlease-test-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The state file(s) of a state directory, as text (for "unchanged" assertions). */
export function snapshotDir(dir: string): Record<string, string> {
  if (!existsSync(dir)) return {};
  const files: Record<string, string> = {};
  for (const name of readdirSync(dir)) {
    try {
      files[name] = readFileSync(join(dir, name), 'utf8');
    } catch {
      files[name] = '<dir>';
    }
  }
  return files;
}

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

export const fixturesDir = fileURLToPath(new URL('./fixtures/', import.meta.url));
export const distEntry = fileURLToPath(new URL('../dist/index.js', import.meta.url));

const projectRoot = fileURLToPath(new URL('../', import.meta.url));

/** Where the user `nobody` finds the build and the fixtures (see {@link nobodyReadableCopy}). */
export interface ReadableCopy {
  distEntry: string;
  fixturesDir: string;
}

let readableCopy: ReadableCopy | undefined;
/**
 * A copy of the build, the fixtures and the runtime dependencies in a directory every user
 * can read. A clone in a private directory (`mktemp -d` makes mode 0700, `/root` is 0700)
 * cannot be read by `nobody`; the tests that switch users run their fixtures from here
 * instead. Made once per test process; call {@link removeNobodyReadableCopy} in `afterAll`.
 */
export function nobodyReadableCopy(): ReadableCopy {
  if (readableCopy !== undefined) return readableCopy;
  const root = mkdtempSync(join(tmpdir(), 'portlease-readable-'));
  cpSync(join(projectRoot, 'dist'), join(root, 'dist'), { recursive: true });
  cpSync(join(projectRoot, 'package.json'), join(root, 'package.json'));
  cpSync(fixturesDir, join(root, 'fixtures'), { recursive: true });
  // The runtime dependencies and theirs (npm hoists them to the top of node_modules).
  const pending = Object.keys(readPackage(projectRoot).dependencies ?? {});
  const copied = new Set<string>();
  for (let name = pending.pop(); name !== undefined; name = pending.pop()) {
    if (copied.has(name)) continue;
    copied.add(name);
    const from = join(projectRoot, 'node_modules', name);
    cpSync(from, join(root, 'node_modules', name), { recursive: true });
    pending.push(...Object.keys(readPackage(from).dependencies ?? {}));
  }
  for (const path of walk(root)) chmodSync(path, statSync(path).isDirectory() ? 0o755 : 0o644);
  readableCopy = { distEntry: join(root, 'dist', 'index.js'), fixturesDir: join(root, 'fixtures') };
  return readableCopy;
}

function readPackage(dir: string): { dependencies?: Record<string, string> } {
  return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
}

function* walk(dir: string): Generator<string> {
  yield dir;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) yield* walk(path);
    else yield path;
  }
}

/** Removes the copy made by {@link nobodyReadableCopy}, if any. */
export function removeNobodyReadableCopy(): void {
  if (readableCopy === undefined) return;
  rmSync(dirname(dirname(readableCopy.distEntry)), { recursive: true, force: true });
  readableCopy = undefined;
  nobodyCanRun = undefined;
}

let nobodyCanRun: boolean | undefined;
/**
 * Whether this process may switch to the user `nobody` (uid 65534, so it is root on Linux)
 * and `nobody` can load the build from {@link nobodyReadableCopy}.
 */
export function canRunAsNobody(): boolean {
  if (nobodyCanRun === undefined) {
    nobodyCanRun = false;
    if (process.platform === 'linux' && process.getuid?.() === 0) {
      const entry = nobodyReadableCopy().distEntry;
      nobodyCanRun =
        spawnSync(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(pathToFileURL(entry).href)})`], {
          uid: 65534,
          gid: 65534,
          stdio: 'ignore',
          timeout: 20_000,
        }).status === 0;
    }
  }
  return nobodyCanRun;
}

/** Why the tests that run as `nobody` are skipped, for their names. */
export const NOBODY_SKIP_REASON = 'skipped: needs root on Linux, and a temporary directory the user nobody can read';

/** Forks a fixture script with IPC; it receives the dist entry in PORTLEASE_DIST. */
export function forkFixture(name: string, args: string[], env: Record<string, string> = {}): ChildProcess {
  return fork(join(fixturesDir, name), args, {
    env: { ...process.env, PORTLEASE_DIST: distEntry, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
}

/** The next IPC message of `child`, or a rejection after `timeoutMs` or on exit. */
export function nextMessage<T>(child: ChildProcess, timeoutMs = 20_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`no message from child within ${timeoutMs} ms`)), timeoutMs);
    const onMessage = (message: T) => done(undefined, message);
    const onExit = (code: number | null, signal: string | null) =>
      done(new Error(`child exited (${code ?? signal}) before sending a message`));
    function done(error: Error | undefined, message?: T): void {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(message as T);
    }
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

/** Resolves when `child` has exited (killing it after `timeoutMs`). */
export function exited(child: ChildProcess, timeoutMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) {
      resolve({ code: child.exitCode, signal: child.signalCode });
      return;
    }
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

/** The state (from /proc/<pid>/stat, Linux) of a process: 'T' once it is stopped. */
export function processState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
  } catch {
    return undefined;
  }
}

export async function untilStopped(child: ChildProcess, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (processState(child.pid!) !== 'T') {
    if (Date.now() > deadline || child.exitCode !== null)
      throw new Error(`process ${child.pid} never stopped (SIGSTOP or its pause point)`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Kills every still-running child; for `finally` blocks. */
export function killAll(children: Iterable<ChildProcess>): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/** The claims stored in a state file, read as a fresh process would (no cache, no repair). */
export function storedClaims(stateFile: string): ClaimRecord[] {
  return new StateStore(stateFile).load({ repair: false }).claims;
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

/** Whether python3 is on PATH (the "really served" tests need a program that binds without Node's socket options). */
export const hasPython = spawnSync('python3', ['--version'], { stdio: 'ignore' }).status === 0;

/**
 * Binds and listens on `port` from python3, which (unlike libuv) sets no SO_REUSEADDR:
 * `'ok'`, or the errno (98 = EADDRINUSE on Linux).
 */
export function bindWithoutReuseAddr(port: number, host = '127.0.0.1'): string {
  const script =
    'import socket,sys\ns=socket.socket()\ntry:\n s.bind((sys.argv[1],int(sys.argv[2]))); s.listen(); print("ok")\nexcept OSError as e: print(e.errno)';
  return spawnSync('python3', ['-c', script, host, String(port)], { encoding: 'utf8', timeout: 10_000 }).stdout.trim();
}

/**
 * Starts `python3 -m http.server --bind 127.0.0.1 PORT`, waits (bounded) until it answers
 * an HTTP request, then kills it. Rejects with python's stderr if it cannot serve.
 */
export async function serveWithPython(port: number, timeoutMs = 10_000): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'portlease-serve-'));
  const server = spawn('python3', ['-m', 'http.server', '--bind', '127.0.0.1', '--directory', root, String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  server.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  try {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (server.exitCode !== null) throw new Error(`python3 http.server on ${port} exited (${server.exitCode}): ${stderr.trim()}`);
      const status = await new Promise<number | undefined>((resolve) => {
        const request = httpGet({ host: '127.0.0.1', port, path: '/', timeout: 1000 }, (response) => {
          response.resume();
          resolve(response.statusCode);
        });
        request.on('error', () => resolve(undefined));
        request.on('timeout', () => request.destroy());
      });
      if (status === 200) return;
      if (Date.now() > deadline) throw new Error(`python3 http.server on ${port} did not answer within ${timeoutMs} ms: ${stderr.trim()}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  } finally {
    server.kill('SIGKILL');
    await exited(server);
    rmSync(root, { recursive: true, force: true });
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
