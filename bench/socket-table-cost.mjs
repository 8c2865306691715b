// What the /proc/net socket table costs a hot claim, with few and with ~2,000 local TCP
// sockets. Run after `npm run build`: `node bench/socket-table-cost.mjs`. Prints JSON.
// Timings are for reading, never asserted anywhere.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PortAllocator } from '../dist/index.js';
import { procNetSource, SocketTable } from '../dist/ports/socket-table.js';

const CLAIMS = 300;
const ROUNDS = 5;
const BASE = 20_000;

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

function perCallUs(fn, calls) {
  fn();
  const start = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) fn();
  return Number(process.hrtime.bigint() - start) / calls / 1e3;
}

// Mean ms per claim over CLAIMS claims (held, then released), median of ROUNDS rounds.
// With `churn`, one new loopback connection is opened before each claim, so the TCP open
// counters move and the socket table must be re-read every time.
async function hotClaimMs(socketTable, churn) {
  const stateDir = mkdtempSync(join(tmpdir(), 'portlease-bench-'));
  const allocator = new PortAllocator({ stateDir, socketTable });
  const results = [];
  for (let round = 0; round <= ROUNDS; round++) {
    let total = 0;
    for (let i = 0; i < CLAIMS; i++) {
      // Outside the timed span: only the claim itself is measured.
      if (churn) await churn();
      const started = performance.now();
      await allocator.claim({ base: BASE });
      total += performance.now() - started;
    }
    await allocator.release();
    if (round > 0) results.push(total / CLAIMS); // round 0 warms up
  }
  rmSync(stateDir, { recursive: true, force: true });
  return Number(median(results).toFixed(3));
}

async function openSockets(server, pairs) {
  const clients = [];
  const { port } = server.address();
  for (let i = 0; i < pairs; i++) {
    const client = connect(port, '127.0.0.1');
    await new Promise((resolve, reject) => client.once('connect', resolve).once('error', reject));
    clients.push(client);
  }
  return clients;
}

const sink = createServer((socket) => socket.on('error', () => {}));
await new Promise((resolve) => sink.listen(0, '127.0.0.1', resolve));
const churnClients = [];
const churn = async () => {
  churnClients.push(...(await openSockets(sink, 1)));
  if (churnClients.length > 20) churnClients.shift().destroy();
};

const report = {};
for (const [label, pairs] of [
  ['few', 0],
  ['~2000', 1000],
]) {
  const held = await openSockets(sink, pairs);
  const rows = readFileSync('/proc/net/tcp', 'latin1').split('\n').length - 2;
  const rows6 = readFileSync('/proc/net/tcp6', 'latin1').split('\n').length - 2;
  const uncached = new SocketTable({ maxAgeMs: 0 });
  report[label] = {
    tcpSockets: rows + rows6,
    signalReadUs: Number(perCallUs(() => procNetSource.signal(), 2000).toFixed(1)),
    tableReadAndParseUs: Number(perCallUs(() => uncached.portsInUse(), 100).toFixed(1)),
    hotClaimMs: {
      withoutSocketTable: await hotClaimMs(false),
      withSocketTableCached: await hotClaimMs(true),
      withoutSocketTableNewConnectionEachClaim: await hotClaimMs(false, churn),
      withSocketTableNewConnectionEachClaim: await hotClaimMs(true, churn),
    },
  };
  for (const client of held) client.destroy();
}
for (const client of churnClients) client.destroy();
sink.close();
console.log(JSON.stringify({ node: process.version, claims: CLAIMS, rounds: ROUNDS, ...report }, null, 2));
