import { describe, expect } from 'vitest';
import { freeRunBase } from '../helpers/sockets.js';
import { stateTest } from '../helpers/state-dir.js';
import { type ListedClaim, listClaims, runBash, runCli } from './run-cli.js';

const it = stateTest;

// What a CI job does: PORTS=$(portlease claim ...) in a shell script, then uses the ports.
describe('claims made from a bash script', () => {
  function parseLines(stdout: string): { ports: number[]; shell: number; inside: ListedClaim[][] } {
    const [portsLine, shellLine, ...lists] = stdout.trim().split('\n');
    return {
      ports: portsLine!.split(' ').map(Number),
      shell: Number(shellLine),
      inside: lists.map((line) => (JSON.parse(line) as { claims: ListedClaim[] }).claims),
    };
  }

  it('stay claimed while the script runs, after the CLI has exited, and die with the script', async ({ stateDir }) => {
    const base = await freeRunBase(2);
    const script = `set -eu
      P=$("$NODE" "$CLI" claim --count 2 --base ${base} --state-dir "$STATE_DIR")
      echo "$P"; echo "$$"
      "$NODE" "$CLI" list --json --state-dir "$STATE_DIR"
      sleep 0.3   # the job works with the ports for a while
      "$NODE" "$CLI" list --json --state-dir "$STATE_DIR"`;
    const result = await runBash(script, { STATE_DIR: stateDir });
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const { ports, shell, inside } = parseLines(result.stdout);
    expect(ports).toEqual([base, base + 1]);
    for (const claims of inside) expect(claims).toMatchObject([{ ports, pid: shell, status: 'live' }]);

    // The script has ended: its claim is dead, and a new claimer gets the same ports again.
    expect(await listClaims(stateDir)).toMatchObject([{ ports, pid: shell, status: 'dead', live: false }]);
    const again = await runCli(['claim', '--count', '2', '--base', String(base), '--state-dir', stateDir]);
    expect(again.stdout).toBe(`${base} ${base + 1}\n`);
  });

  it("are free again as soon as the script runs 'portlease release'", async ({ stateDir }) => {
    const base = await freeRunBase(3);
    const script = `set -eu
      P=$("$NODE" "$CLI" claim --count 3 --base ${base} --label job --state-dir "$STATE_DIR")
      echo "$P"; echo "$$"
      "$NODE" "$CLI" list --json --state-dir "$STATE_DIR"
      "$NODE" "$CLI" release --state-dir "$STATE_DIR" >/dev/null
      "$NODE" "$CLI" list --json --state-dir "$STATE_DIR"`;
    const result = await runBash(script, { STATE_DIR: stateDir });
    expect(result).toMatchObject({ code: 0, stderr: '' });
    const { ports, shell, inside } = parseLines(result.stdout);
    expect(inside[0]).toMatchObject([{ ports, pid: shell, label: 'job', status: 'live' }]);
    expect(inside[1]).toEqual([]);
  });

  it('runs the README CI example: three ports, two services and a test run on them', async ({ stateDir }) => {
    // The README's example with `portlease` spelled as node + the built CLI.
    const script = `set -euo pipefail
      portlease() { "$NODE" "$CLI" "$@"; }
      ports=$(portlease claim --count 3 --host 127.0.0.1 --label ci-job --state-dir "$STATE_DIR")
      trap 'portlease release --state-dir "$STATE_DIR" >/dev/null' EXIT
      read -r API_PORT DB_PORT METRICS_PORT <<<"$ports"
      serve='require("net").createServer(s => s.end(process.argv[1])).listen(+process.env.P, "127.0.0.1")'
      P=$API_PORT "$NODE" -e "$serve" api & api=$!
      P=$DB_PORT "$NODE" -e "$serve" db & db=$!
      ask='const s = require("net").connect(+process.argv[1], "127.0.0.1"); s.on("data", d => process.stdout.write(d + " ")).on("error", () => setTimeout(() => process.exit(9), 0))'
      for i in $(seq 50); do "$NODE" -e "$ask" "$API_PORT" >/dev/null 2>&1 && "$NODE" -e "$ask" "$DB_PORT" >/dev/null 2>&1 && break; sleep 0.1; done
      "$NODE" -e "$ask" "$API_PORT"; "$NODE" -e "$ask" "$DB_PORT"; echo
      kill "$api" "$db"`;
    const result = await runBash(script, { STATE_DIR: stateDir }, 30_000);
    expect(result.stderr).toBe('');
    expect(result).toMatchObject({ code: 0, stdout: 'api db \n' });
    // The EXIT trap gave the ports back.
    expect(await listClaims(stateDir)).toEqual([]);
  });

  it('keeps ports of a claim that outlives its script with --ttl', async ({ stateDir }) => {
    const result = await runBash('"$NODE" "$CLI" claim --ttl 10m --state-dir "$STATE_DIR"; true', { STATE_DIR: stateDir });
    const ports = result.stdout.trim().split(' ').map(Number);
    expect(await listClaims(stateDir)).toMatchObject([{ ports, status: 'live' }]);
  });
});
