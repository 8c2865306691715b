import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect } from 'vitest';
import { fixturesDir, exited } from '../helpers/processes.js';
import { stateTest } from '../helpers/state-dir.js';
import { cliPath, listClaims } from './run-cli.js';

const it = stateTest;

const PROCESSES = 12;
const PORTS_EACH = 2;

describe(`${PROCESSES} portlease claim processes started at the same instant`, () => {
  const children: ChildProcess[] = [];
  afterEach(() => {
    for (const child of children.splice(0)) child.kill('SIGKILL');
  });

  it('get disjoint runs of consecutive ports', async ({ stateDir }) => {
    const base = 20_000 + Math.floor(Math.random() * 20_000);
    const go = join(stateDir, 'go');
    for (let i = 0; i < PROCESSES; i++) {
      // Node is started and waits in the preloaded barrier; the CLI runs once `go` exists.
      const args = [
        '--import',
        join(fixturesDir, 'start-barrier.mjs'),
        cliPath,
        'claim',
        '--count',
        String(PORTS_EACH),
        '--base',
        String(base),
      ];
      children.push(
        spawn(process.execPath, [...args, '--host', '127.0.0.1', '--state-dir', stateDir], {
          stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, PORTLEASE_TEST_GO: go },
        }),
      );
    }
    const results = children.map((child) => exited(child, 30_000));
    await new Promise((resolve) => setTimeout(resolve, 1000)); // let every process reach the barrier
    writeFileSync(go, '');
    const outputs = await Promise.all(results);

    expect(outputs.map((output) => [output.code, output.stderr])).toEqual(Array(PROCESSES).fill([0, '']));
    const runs = outputs.map((output) => output.stdout.trim().split(' ').map(Number));
    for (const run of runs) expect(run).toEqual([run[0], run[0]! + 1]);
    const all = runs.flat();
    expect(new Set(all).size).toBe(PROCESSES * PORTS_EACH);
    expect((await listClaims(stateDir)).flatMap((claim) => claim.ports).sort()).toEqual([...all].sort());
  });
});
