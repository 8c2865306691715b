// Cold: the wall time of one allocation in a fresh process, next to starting Node at all.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { formatMicros, median, quick, ratio, table, tempDir } from './lib.mjs';

const dist = fileURLToPath(new URL('../dist/index.js', import.meta.url));
const cli = fileURLToPath(new URL('../dist/cli.cjs', import.meta.url));

function time(args, env) {
  const start = process.hrtime.bigint();
  const result = spawnSync(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  const micros = Number(process.hrtime.bigint() - start) / 1000;
  if (result.status !== 0) throw new Error(`${args.join(' ')} failed: ${result.stderr}`);
  return micros;
}

export async function coldTable(facts = new Map()) {
  const runs = quick ? 2 : 30;
  const { dir, cleanup } = tempDir('/tmp');
  try {
    const subjects = {
      'node -e 0': ['-e', '0'],
      'get-port, fresh process': ['--input-type=module', '-e', "import getPort from 'get-port'; await getPort({ port: 24000 });"],
      'portlease findSequentialPorts(), fresh process': [
        '--input-type=module',
        '-e',
        `import { findSequentialPorts } from ${JSON.stringify(dist)}; await findSequentialPorts({ base: 24000 });`,
      ],
    };
    if (existsSync(cli))
      subjects['portlease CLI claim'] = [cli, 'claim', '--base', '24000', '--pid', String(process.pid), '--state-dir', dir];
    const rows = [];
    let nodeOnly;
    for (const [name, args] of Object.entries(subjects)) {
      const samples = [];
      for (let i = 0; i < runs; i++) samples.push(time(args, { PORTLEASE_STATE_DIR: dir }));
      const value = median(samples);
      nodeOnly ??= value;
      facts.set(`cold.${name}`, value);
      rows.push([name, ratio(value, nodeOnly), formatMicros(value)]);
    }
    return `Median of ${runs} runs, spawned from Node (spawnSync), state on /tmp.\n\n${table(['subject', '× node -e 0', 'wall'], rows)}`;
  } finally {
    cleanup();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) console.log(await coldTable());
