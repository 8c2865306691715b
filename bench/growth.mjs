// Growth: the latency of one claim+release, and of a fresh CLI claim, with 10, 100, 1,000 and
// 5,000 live claims already in the state, next to what rewriting the whole state as plain
// JSON would cost at each size.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PortAllocator } from '../dist/index.js';
import { formatMicros, measure, median, quick, ratio, table, tempDir } from './lib.mjs';

const BASE = 23_000;
const cli = fileURLToPath(new URL('../dist/cli.cjs', import.meta.url));

/** Median wall time of a fresh `portlease claim` process on the state in `dir`, in µs. */
function freshCliClaim(dir) {
  const samples = [];
  for (let i = 0; i < (quick ? 1 : 7); i++) {
    const start = process.hrtime.bigint();
    const result = spawnSync(process.execPath, [cli, 'claim', '--state-dir', dir, '--base', String(BASE + 100), '--ttl', '2s']);
    samples.push(Number(process.hrtime.bigint() - start) / 1000);
    if (result.status !== 0) throw new Error(`portlease claim failed: ${result.stderr}`);
  }
  return median(samples);
}

async function portleaseAt(root, live) {
  const { dir, cleanup } = tempDir(root);
  try {
    const allocator = new PortAllocator({ stateDir: dir });
    // Live claims in a range of their own, so the measured claim probes the same port each time.
    for (let i = 0; i < live; i++) await allocator.claim({ base: 30_000, ttlMs: 3_600_000 });
    const samples = await measure(
      async () => {
        const lease = await allocator.claim({ base: BASE });
        await lease.release();
      },
      { iterations: quick ? 5 : 300 },
    );
    return { claimRelease: median(samples), cli: freshCliClaim(dir) };
  } finally {
    cleanup();
  }
}

/** Reading, parsing, stringifying and rewriting (temp + rename) the whole state as JSON. */
async function naiveJsonAt(root, live) {
  const { dir, cleanup } = tempDir(root);
  try {
    const path = join(dir, 'state.json');
    const claims = Array.from({ length: live }, (_, i) => ({
      id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
      start: 30_000 + i,
      count: 1,
      host: '0.0.0.0',
      pid: process.pid,
      startTime: '123456',
      createdAt: Date.now(),
      expiresAt: Date.now() + 3_600_000,
    }));
    writeFileSync(path, JSON.stringify({ version: 1, claims }));
    const samples = await measure(
      () => {
        const state = JSON.parse(readFileSync(path, 'utf8'));
        writeFileSync(`${path}.tmp`, JSON.stringify(state));
        renameSync(`${path}.tmp`, path);
      },
      { iterations: quick ? 5 : 300 },
    );
    return median(samples);
  } finally {
    cleanup();
  }
}

export async function growthTable(roots, facts = new Map()) {
  const sizes = quick ? [10, 100] : [10, 100, 1000, 5000];
  const rows = [];
  for (const [label, root] of Object.entries(roots)) {
    const results = [];
    for (const live of sizes) results.push([live, await portleaseAt(root, live), await naiveJsonAt(root, live)]);
    const [, first, firstNaive] = results[0];
    const [lastLive, last] = results[results.length - 1];
    facts.set(`growth.${label}`, { live: lastLive, claimRelease: last.claimRelease / first.claimRelease, cli: last.cli / first.cli });
    for (const [live, portlease, naive] of results) {
      rows.push([
        label,
        String(live),
        ratio(portlease.claimRelease, first.claimRelease),
        formatMicros(portlease.claimRelease),
        ratio(portlease.cli, first.cli),
        formatMicros(portlease.cli),
        ratio(naive, firstNaive),
        formatMicros(naive),
      ]);
    }
  }
  return table(
    [
      'state on',
      'live claims',
      'claim+release × (vs 10)',
      'claim+release',
      'fresh CLI claim × (vs 10)',
      'fresh CLI claim',
      'naive JSON × (vs 10)',
      'naive JSON rewrite',
    ],
    rows,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(await growthTable({ 'ext4 (/tmp)': '/tmp', 'tmpfs (/dev/shm)': '/dev/shm' }));
}
