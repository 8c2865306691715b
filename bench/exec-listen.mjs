// What `exec --listen` costs against plain `exec`: whole runs of the CLI, as a user pays
// them (node start, claim, listen, trampoline, command, release), interleaved so that both
// see the same machine at the same moment. The command is `true`, so the times are
// portlease's own.
//
//   npm run build && node bench/exec-listen.mjs [runs per variant, default 30]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, quantile, table } from './lib.mjs';

const cli = fileURLToPath(new URL('../dist/cli.cjs', import.meta.url));
const runs = Number(process.argv[2] ?? 30);
const stateDir = mkdtempSync(join(tmpdir(), 'portlease-bench-'));
const variants = {
  'exec -- true': ['exec', '--state-dir', stateDir, '--host', '127.0.0.1', '--', 'true'],
  'exec --listen -- true': ['exec', '--state-dir', stateDir, '--host', '127.0.0.1', '--listen', '--', 'true'],
  'exec -n 3 -- true': ['exec', '--state-dir', stateDir, '--host', '127.0.0.1', '-n', '3', '--', 'true'],
  'exec -n 3 --listen -- true': ['exec', '--state-dir', stateDir, '--host', '127.0.0.1', '-n', '3', '--listen', '--', 'true'],
};
const times = Object.fromEntries(Object.keys(variants).map((name) => [name, []]));
try {
  for (const args of Object.values(variants)) spawnSync(process.execPath, [cli, ...args]); // warm the file cache
  for (let run = 0; run < runs; run++) {
    for (const [name, args] of Object.entries(variants)) {
      const start = process.hrtime.bigint();
      const result = spawnSync(process.execPath, [cli, ...args], { stdio: 'ignore', timeout: 30_000 });
      if (result.status !== 0) throw new Error(`${name} exited ${result.status}`);
      times[name].push(Number(process.hrtime.bigint() - start) / 1e6);
    }
  }
} finally {
  rmSync(stateDir, { recursive: true, force: true });
}
const base = median(times['exec -- true']);
console.log(
  table(
    ['variant', 'median ms', 'p90 ms', 'min ms', 'vs exec -- true'],
    Object.entries(times).map(([name, list]) => [
      name,
      median(list).toFixed(1),
      quantile(list, 0.9).toFixed(1),
      Math.min(...list).toFixed(1),
      `${(median(list) / base).toFixed(2)}x`,
    ]),
  ),
);
console.log(`\n${runs} runs each, interleaved; node ${process.version}, ${process.platform}.`);
