// Shared helpers of the benchmark harness: timing, statistics, tables.
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';

/** Whether to run tiny iteration counts (the smoke run inside `npm test`). */
export const quick = process.argv.includes('--quick') || process.env.PORTLEASE_BENCH_QUICK === '1';

/** A fresh directory on the filesystem of `root`; removed by the returned cleanup. */
export function tempDir(root, prefix = 'portlease-bench-') {
  const dir = mkdtempSync(join(root, prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs `fn` `warmup` times unmeasured, then `iterations` times; resolves to durations in µs. */
export async function measure(fn, { iterations, warmup = Math.ceil(iterations / 10) }) {
  for (let i = 0; i < warmup; i++) await fn(i);
  const samples = new Array(iterations);
  for (let i = 0; i < iterations; i++) {
    const start = process.hrtime.bigint();
    await fn(i);
    samples[i] = Number(process.hrtime.bigint() - start) / 1000;
  }
  return samples;
}

/** The `q` quantile (0..1) of `samples`. */
export function quantile(samples, q) {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

export const median = (samples) => quantile(samples, 0.5);

/** Formats µs readably. */
export function formatMicros(us) {
  if (us >= 10_000) return `${(us / 1000).toFixed(1)} ms`;
  if (us >= 1000) return `${(us / 1000).toFixed(2)} ms`;
  return `${us.toFixed(0)} µs`;
}

export const ratio = (value, reference) => `${(value / reference).toFixed(2)}×`;

/** A markdown table from a header row and rows. */
export function table(header, rows) {
  const lines = [`| ${header.join(' | ')} |`, `| ${header.map(() => '---').join(' | ')} |`];
  for (const row of rows) lines.push(`| ${row.join(' | ')} |`);
  return lines.join('\n');
}
