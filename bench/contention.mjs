// Contention: P processes released at the same instant, each taking 3 ports from the same
// base on 127.0.0.1 (the same host given to every subject) and then binding them: latency
// percentiles and maximum, CPU per process, duplicates (ports handed to two processes) and
// failed binds. BENCH_ROUNDS (default 5), BENCH_COUNTS, BENCH_SUBJECTS narrow or widen it.
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { quantile, quick, table, tempDir } from './lib.mjs';

const HOST = '127.0.0.1';
const contender = fileURLToPath(new URL('./fixtures/contender.mjs', import.meta.url));

function once(child, event) {
  return new Promise((resolve) => child.once(event, resolve));
}

async function round(subject, processes, base) {
  const { dir, cleanup } = tempDir('/tmp');
  const children = [];
  try {
    for (let i = 0; i < processes; i++) {
      children.push(fork(contender, [subject, dir, String(base), '3', HOST], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    }
    await Promise.all(children.map((child) => once(child, 'message')));
    const startAt = Date.now() + 200;
    const reports = children.map((child) => once(child, 'message'));
    for (const child of children) child.send({ startAt });
    const results = await Promise.all(reports);
    for (const child of children) child.send('done');
    await Promise.all(children.map((child) => (child.exitCode === null ? once(child, 'exit') : undefined)));
    return results;
  } finally {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
    cleanup();
  }
}

/**
 * Rows per subject and process count: p50, p99, max latency, wall, duplicates. Key numbers
 * also go into `facts` (for the goals table of bench/run.mjs), when given.
 */
export async function contentionTable(facts = new Map()) {
  const counts = quick ? [4] : (process.env.BENCH_COUNTS ?? '4,16,32').split(',').map(Number);
  const rounds = quick ? 1 : Number(process.env.BENCH_ROUNDS ?? 5);
  const rows = [];
  for (const processes of counts) {
    for (const subject of (process.env.BENCH_SUBJECTS ?? 'portlease,get-port,portfinder').split(',')) {
      const latencies = [];
      let duplicates = 0;
      let failedBinds = 0;
      const cpu = [];
      let errors = 0;
      let walls = 0;
      for (let r = 0; r < rounds; r++) {
        const base = 22_000 + r * 200;
        const results = await round(subject, processes, base);
        const ports = results.flatMap((result) => result.ports ?? []);
        errors += results.filter((result) => result.error !== undefined).length;
        duplicates += ports.length - new Set(ports).size;
        for (const result of results) {
          failedBinds += result.failedBinds ?? 0;
          if (result.cpuMs !== undefined) cpu.push(result.cpuMs);
        }
        const times = results.map((result) => result.latencyMs ?? Number.NaN);
        latencies.push(...times);
        walls += Math.max(...times);
      }
      facts.set(`contention.p99.${subject}.${processes}`, quantile(latencies, 0.99));
      facts.set(`contention.max.${subject}.${processes}`, Math.max(...latencies));
      facts.set(`contention.faults.${subject}.${processes}`, duplicates + failedBinds + errors);
      rows.push([
        subject,
        String(processes),
        `${quantile(latencies, 0.5).toFixed(1)} ms`,
        `${quantile(latencies, 0.99).toFixed(1)} ms`,
        `${Math.max(...latencies).toFixed(1)} ms`,
        `${(walls / rounds).toFixed(1)} ms`,
        `${quantile(cpu, 0.5).toFixed(1)} ms`,
        `${duplicates} of ${processes * 3 * rounds}`,
        `${failedBinds}`,
        String(errors),
      ]);
    }
  }
  return `Each process takes 3 ports from one base on ${HOST} (the same host for every subject), then binds them on it; ${rounds} round${rounds === 1 ? '' : 's'} per row; latency from the common start instant (includes waiting for the lock); CPU is the process's own during the take (median).\n\n${table(
    ['subject', 'processes', 'p50', 'p99', 'max', 'wall (mean per round)', 'CPU per process', 'duplicate ports', 'failed binds', 'errors'],
    rows,
  )}`;
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await contentionTable());
