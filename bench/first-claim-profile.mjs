// Where the CPU of a first claim goes: fresh processes each import the build and claim 3 ports
// on 127.0.0.1, under `node --cpu-prof`; the samples of the claim's window (cut by
// process.hrtime, which shares V8's monotonic clock) are summed per function, inclusive.
// Profiled times are about 2x the real ones (the profiler's own cost), and overlap where one
// function calls another. This is the profile behind every contention and cold goal: on few
// cores a burst of processes ends after about processes x (CPU of one first claim) / cores.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { quick, table } from './lib.mjs';

const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
// Frames that say nothing about what the claim does.
const GENERIC = new Set(['(root)', '(anon)', '(program)', '(idle)', 'processTicksAndRejections', 'runMicrotasks']);

function claimInFreshProcess(profileDir, stateDir, index) {
  const script = `
    const { findSequentialPorts } = await import(${JSON.stringify(dist)});
    await new Promise((resolve) => setTimeout(resolve, 20));
    const from = process.hrtime.bigint() / 1000n;
    await findSequentialPorts({ stateDir: ${JSON.stringify(stateDir)}, base: 24100, count: 3, host: '127.0.0.1' });
    console.log(JSON.stringify({ from: String(from), to: String(process.hrtime.bigint() / 1000n) }));`;
  const name = `claim-${String(index).padStart(2, '0')}.cpuprofile`;
  const result = spawnSync(
    process.execPath,
    ['--cpu-prof', '--cpu-prof-interval', '50', '--cpu-prof-dir', profileDir, '--cpu-prof-name', name, '--input-type=module', '-e', script],
    { encoding: 'utf8', timeout: 30_000 },
  );
  if (result.status !== 0) throw new Error(`profiled claim failed: ${result.stderr}`);
  return { file: join(profileDir, name), window: JSON.parse(result.stdout.trim().split('\n').pop()) };
}

/** Inclusive profiled time per function name within `window`, added into `totals`. */
function addProfile(totals, file, window) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const nodes = new Map(profile.nodes.map((node) => [node.id, node]));
  const parents = new Map();
  for (const node of profile.nodes) for (const child of node.children ?? []) parents.set(child, node.id);
  const from = Number(window.from);
  const to = Number(window.to);
  let at = profile.startTime;
  let windowUs = 0;
  profile.samples.forEach((sample, index) => {
    at += profile.timeDeltas[index];
    const duration = profile.timeDeltas[index + 1] ?? 0;
    if (at < from || at > to) return;
    windowUs += duration;
    const seen = new Set();
    for (let id = sample; id !== undefined; id = parents.get(id)) {
      const frame = nodes.get(id).callFrame;
      const name = frame.functionName || '(anon)';
      if (GENERIC.has(name) || seen.has(name)) continue;
      seen.add(name);
      totals.set(name, (totals.get(name) ?? 0) + duration);
    }
  });
  return windowUs;
}

/** The functions a first claim spends most profiled time in, per process. */
export function firstClaimProfileTable() {
  const runs = quick ? 1 : 10;
  const profileDir = mkdtempSync(join(tmpdir(), 'portlease-profile-'));
  const stateDir = mkdtempSync(join(tmpdir(), 'portlease-profile-state-'));
  try {
    const totals = new Map();
    let windowUs = 0;
    for (let index = 0; index < runs; index++) {
      const { file, window } = claimInFreshProcess(profileDir, stateDir, index);
      windowUs += addProfile(totals, file, window);
    }
    const rows = [...totals]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 25)
      .map(([name, us]) => [name, `${(us / runs / 1000).toFixed(2)} ms`]);
    return `${runs} fresh process${runs === 1 ? '' : 'es'}, each importing the build and claiming 3 ports on 127.0.0.1 (state on ${tmpdir()}); the claim's window took ${(windowUs / runs / 1000).toFixed(1)} ms profiled per process. Inclusive time per function, profiled (about 2× real), overlapping where one calls another; the 25 largest.\n\n${table(['function', 'profiled, per process'], rows)}`;
  } finally {
    rmSync(profileDir, { recursive: true, force: true });
    rmSync(stateDir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(firstClaimProfileTable());
