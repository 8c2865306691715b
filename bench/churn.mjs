// Hot claim + release while other programs open TCP connections: none, outgoing only
// (connections to a closed port: active opens), and accepted (a loopback server: passive
// opens). Shows what re-reading the socket table costs when the open counters move.
//
//   node bench/churn.mjs [dist/index.js of another build ...]
//
// Each build given (default: this checkout's) is measured in turn, interleaved per round.
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { formatMicros, measure, median, quantile, quick, table, tempDir } from './lib.mjs';

const churnKinds = ['none', 'outgoing', 'accepted'];

/** A child process that keeps opening connections of one kind until killed (or 60 s). */
function startChurn(kind) {
  if (kind === 'none') return undefined;
  const script = `
    const net = require('node:net');
    setTimeout(() => process.exit(0), 60_000);
    const server = net.createServer((s) => s.destroy());
    const target = (port) => { const c = net.connect(port, '127.0.0.1'); c.on('error', () => {}); c.on('close', () => setTimeout(() => target(port), 1)); };
    if (${JSON.stringify(kind)} === 'accepted') server.listen(0, '127.0.0.1', () => target(server.address().port));
    else { server.listen(0, '127.0.0.1', () => { const port = server.address().port; server.close(() => target(port)); }); }
  `;
  return spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
}

const builds = process.argv.slice(2).filter((arg) => !arg.startsWith('--'));
if (builds.length === 0) builds.push('dist/index.js');
const modules = await Promise.all(builds.map((path) => import(pathToFileURL(resolve(path)).href)));
const { dir, cleanup } = tempDir(tmpdir());
const iterations = quick ? 10 : 300;
const samples = new Map();
try {
  for (const kind of churnKinds) {
    const churn = startChurn(kind);
    await new Promise((done) => setTimeout(done, 300));
    try {
      for (const [index, { PortAllocator }] of modules.entries()) {
        const allocator = new PortAllocator({ stateDir: join(dir, `state-${index}`) });
        const run = await measure(async () => (await allocator.claim({ base: 21_000 })).release(), { iterations });
        samples.set(`${kind}|${index}`, run);
      }
    } finally {
      churn?.kill();
    }
  }
} finally {
  cleanup();
}
const rows = churnKinds.flatMap((kind) =>
  builds.map((build, index) => {
    const run = samples.get(`${kind}|${index}`);
    return [kind, build, formatMicros(median(run)), formatMicros(quantile(run, 0.9)), formatMicros(quantile(run, 0.99))];
  }),
);
console.log(table(['connections meanwhile', 'build', 'claim+release p50', 'p90', 'p99'], rows));
