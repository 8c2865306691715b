// Before/after: this checkout against another one (e.g. a worktree of an earlier commit,
// built), interleaved so that both see the same machine at the same moment. Absolute times
// on a shared VM move by tens of percent between runs; interleaving is what makes a ratio
// between two versions mean something.
//
//   git worktree add /tmp/before <commit> && (cd /tmp/before && npm ci && npm run build)
//   npm run build && node bench/compare.mjs /tmp/before
//
// Prints: hot claim+release (one process, both versions loaded, alternating batches), cold
// start (fresh processes, alternating), and contention (alternating rounds of each
// checkout's own bench/contention.mjs at 16 and 32 processes).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, quantile, table } from './lib.mjs';

if (process.argv[2] === '--contention-of') {
  const { contentionTable } = await import(join(resolve(process.argv[3]), 'bench', 'contention.mjs'));
  console.log(await contentionTable());
  process.exit(0);
}

const here = fileURLToPath(new URL('..', import.meta.url));
const other = process.argv[2] === undefined ? undefined : resolve(process.argv[2]);
if (other === undefined || !existsSync(join(other, 'dist', 'index.js'))) {
  console.error('Usage: node bench/compare.mjs <other checkout, built>');
  process.exit(2);
}
const versions = { before: other, after: here };

async function hot(root) {
  const BATCH = 200;
  const BATCHES = 8;
  const subjects = {};
  for (const [name, checkout] of Object.entries(versions)) {
    const { PortAllocator } = await import(join(checkout, 'dist', 'index.js'));
    const dir = mkdtempSync(join(root, 'portlease-compare-'));
    subjects[name] = { allocator: new PortAllocator({ stateDir: dir }), dir, samples: [] };
    for (let i = 0; i < 50; i++) await (await subjects[name].allocator.claim({ base: 21_000 })).release();
  }
  for (let batch = 0; batch < BATCHES; batch++) {
    for (const name of batch % 2 === 0 ? ['before', 'after'] : ['after', 'before']) {
      const subject = subjects[name];
      for (let i = 0; i < BATCH; i++) {
        const start = process.hrtime.bigint();
        await (await subject.allocator.claim({ base: 21_000 })).release();
        subject.samples.push(Number(process.hrtime.bigint() - start) / 1000);
      }
    }
  }
  for (const subject of Object.values(subjects)) rmSync(subject.dir, { recursive: true, force: true });
  const [b, a] = [subjects.before.samples, subjects.after.samples];
  return [
    `hot claim+release, ${root}`,
    `${median(b).toFixed(0)} µs`,
    `${median(a).toFixed(0)} µs`,
    `${(median(a) / median(b)).toFixed(2)}×`,
    `p90 ${quantile(b, 0.9).toFixed(0)} → ${quantile(a, 0.9).toFixed(0)} µs`,
  ];
}

function cold() {
  const runs = 25;
  const dirs = Object.fromEntries(Object.keys(versions).map((name) => [name, mkdtempSync('/tmp/portlease-compare-')]));
  const commands = { 'node -e 0': ['-e', '0'] };
  for (const [name, checkout] of Object.entries(versions)) {
    // The bundled bin where a checkout has one, else the modules tsc emitted.
    const cli = existsSync(join(checkout, 'dist', 'cli.cjs')) ? join(checkout, 'dist', 'cli.cjs') : join(checkout, 'dist', 'cli.js');
    commands[`${name}: CLI claim`] = [cli, 'claim', '--ttl', '1m', '--state-dir', dirs[name]];
    const entry = JSON.stringify(join(checkout, 'dist', 'index.js'));
    commands[`${name}: library`] = [
      '--input-type=module',
      '-e',
      `const { findSequentialPorts } = await import(${entry}); await findSequentialPorts({ stateDir: ${JSON.stringify(dirs[name])} });`,
    ];
  }
  const times = Object.fromEntries(Object.keys(commands).map((key) => [key, []]));
  for (let i = 0; i < runs; i++) {
    for (const [key, args] of Object.entries(commands)) {
      const start = process.hrtime.bigint();
      const result = spawnSync(process.execPath, args, { stdio: 'ignore', timeout: 30_000 });
      if (result.status !== 0) throw new Error(`${key} failed (${result.status})`);
      times[key].push(Number(process.hrtime.bigint() - start) / 1e6);
    }
  }
  for (const dir of Object.values(dirs)) rmSync(dir, { recursive: true, force: true });
  const floor = median(times['node -e 0']);
  return ['CLI claim', 'library'].map((what) => {
    const [b, a] = [median(times[`before: ${what}`]), median(times[`after: ${what}`])];
    return [
      `cold ${what}`,
      `${b.toFixed(1)} ms (${(b / floor).toFixed(2)}× node -e 0)`,
      `${a.toFixed(1)} ms (${(a / floor).toFixed(2)}×)`,
      `${(a / b).toFixed(2)}×`,
      `node -e 0: ${floor.toFixed(1)} ms`,
    ];
  });
}

function contention(processes, rounds = 3) {
  const p99 = { before: [], after: [] };
  for (let round = 0; round < rounds; round++) {
    for (const name of round % 2 === 0 ? ['before', 'after'] : ['after', 'before']) {
      // This checkout's harness and fixture for both (the same host, binds and measures),
      // loading each checkout's build; run from a file: flags such as --input-type would be
      // inherited by the forked contenders.
      const output = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--contention-of', here], {
        env: {
          ...process.env,
          BENCH_SUBJECTS: 'portlease',
          BENCH_COUNTS: String(processes),
          PORTLEASE_BENCH_DIST: join(versions[name], 'dist', 'index.js'),
        },
        encoding: 'utf8',
      });
      const row = output.split('\n').find((line) => line.startsWith('| portlease'));
      p99[name].push(Number(row.split('|')[4].trim().replace(' ms', '')));
    }
  }
  const [b, a] = [median(p99.before), median(p99.after)];
  return [
    `contention p99, ${processes} processes`,
    `${b.toFixed(0)} ms`,
    `${a.toFixed(0)} ms`,
    `${(a / b).toFixed(2)}×`,
    `rounds: ${p99.before.join(', ')} → ${p99.after.join(', ')} ms`,
  ];
}

// BENCH_PARTS=hot,cold,contention (default: all) narrows the run.
const parts = new Set((process.env.BENCH_PARTS ?? 'hot,cold,contention').split(','));
const rows = [];
if (parts.has('hot')) {
  rows.push(await hot('/tmp'));
  if (process.platform === 'linux') rows.push(await hot('/dev/shm'));
}
if (parts.has('cold')) rows.push(...cold());
if (parts.has('contention')) rows.push(contention(16), contention(32));
console.log(`Before: ${other}; after: ${here}\n`);
console.log(table(['measure', 'before', 'after', 'after ÷ before', 'note'], rows));
