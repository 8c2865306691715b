import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { exited } from '../helpers/processes.js';
import { canBind } from '../helpers/sockets.js';
import { makeStateDir } from '../helpers/state-dir.js';
import { cliPath, isRunning, listClaims, waitFor } from './run-cli.js';

// Real invocations of `portlease claim` from shells, wrappers and other programs: each job
// claims, then runs a stand-in server (`sleep`, which ends by itself); while it runs, its
// claim must be live and no port may have been handed out twice.

const SERVER_SECONDS = 10;

function has(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
}
function skipNote(tools: string[]): string {
  const missing = tools.filter((tool) => !has(tool));
  return missing.length === 0 ? '' : ` (skipped: ${missing.join(', ')} not installed)`;
}
const unshareProbe = has('unshare')
  ? spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true'], { encoding: 'utf8', timeout: 10_000 })
  : undefined;
const unshareNote =
  unshareProbe === undefined
    ? ' (skipped: unshare not installed)'
    : unshareProbe.status === 0
      ? ''
      : ` (skipped: unshare --pid not permitted here: ${unshareProbe.stderr.trim() || `exit ${unshareProbe.status}`})`;
const isRoot = process.getuid?.() === 0;

describe.runIf(process.platform === 'linux')('claims stay live while the job that uses them runs', () => {
  let work: string;
  let stateDir: string;
  let cleanup: () => void;
  let script: ChildProcess | undefined;

  beforeEach(() => {
    ({ dir: work, cleanup } = makeStateDir());
    stateDir = join(work, 'state');
    // `portlease` on PATH: a script that execs the built CLI, so it adds no process of its own.
    mkdirSync(join(work, 'bin'));
    writeFileSync(join(work, 'bin', 'portlease'), `#!/bin/sh\nexec '${process.execPath}' '${cliPath}' "$@" --state-dir '${stateDir}'\n`);
    chmodSync(join(work, 'bin', 'portlease'), 0o755);
  });
  afterEach(async () => {
    if (script?.pid !== undefined && script.exitCode === null) {
      try {
        process.kill(-script.pid, 'SIGKILL'); // the script's group: its jobs and their stand-ins
      } catch {
        // already gone
      }
      await exited(script);
    }
    script = undefined;
    cleanup();
  });

  /** Starts `bash job.sh` in a group of its own, with W (work dir), S (server seconds) and `portlease` on PATH. */
  function start(body: string): ChildProcess {
    const file = join(work, 'job.sh');
    writeFileSync(file, body);
    script = spawn('bash', [file], {
      cwd: work,
      detached: true,
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, PATH: `${join(work, 'bin')}:${process.env.PATH ?? ''}`, W: work, S: String(SERVER_SECONDS) },
    });
    let stderr = '';
    script.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    script.once('exit', () => {
      if (stderr.trim() !== '') console.error(`job.sh stderr: ${stderr.trim()}`);
    });
    return script;
  }

  function portsIn(name: string): number[] {
    const file = join(work, name);
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8')
      .split(/[\s,]+/)
      .filter(Boolean)
      .map(Number);
  }

  /**
   * Waits until each of `files` holds a port, lets the jobs run a while, then checks that
   * every one of those ports is claimed live and that no two files got the same port.
   */
  async function expectLiveAndDistinct(files: string[]): Promise<number[]> {
    await waitFor(() => files.every((name) => portsIn(name).length > 0), `ports in ${files.join(', ')}`, 30_000);
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const claims = await listClaims(stateDir);
    const ports = files.flatMap((name) => portsIn(name));
    expect(new Set(ports).size).toBe(ports.length);
    for (const port of ports) {
      const claim = claims.find((candidate) => candidate.ports.includes(port));
      expect(claim?.status, `claim of port ${port}: ${JSON.stringify(claim)}`).toBe('live');
    }
    return ports;
  }

  const three = ['port.1', 'port.2', 'port.3'];
  /** Shell lines that keep the script alive (bounded) until the jobs have claimed: it must exit only after the claims. */
  const exitOnceClaimed = (files: string[]): string =>
    `for _ in $(seq 300); do ${files.map((name) => `[ -s "$W/${name}" ]`).join(' && ')} && break; sleep 0.1; done\n`;

  it('( P=$(portlease claim); exec server ) & three times, the script exits', async () => {
    const job = start(
      `for i in 1 2 3; do ( P=$(portlease claim); echo "$P" > "$W/port.$i"; exec sleep "$S" ) & done\n${exitOnceClaimed(three)}`,
    );
    await expectLiveAndDistinct(three);
    await waitFor(() => job.exitCode !== null, 'the script to exit', 10_000); // its jobs run on
  }, 60_000);

  it('{ P=$(portlease claim | tr ...); exec server; } & three times, the script exits', async () => {
    start(
      `for i in 1 2 3; do { P=$(portlease claim --count 2 | tr ' ' ,); echo "$P" > "$W/port.$i"; exec sleep "$S"; } & done\n${exitOnceClaimed(three)}`,
    );
    await expectLiveAndDistinct(three);
  }, 60_000);

  it('( portlease claim > file; exec server ) & three times: background jobs own their claims without a reader', async () => {
    start(`for i in 1 2 3; do ( portlease claim > "$W/port.$i"; exec sleep "$S" ) & done\n${exitOnceClaimed(three)}`);
    await expectLiveAndDistinct(three);
  }, 60_000);

  it("a bare release in one background job frees only that job's ports", async () => {
    start(
      `for i in 1 2 3; do ( P=$(portlease claim); echo "$P" > "$W/port.$i"; sleep "$S"; portlease release ) & done\n` +
        `( until [ -s "$W/port.1" ] && [ -s "$W/port.2" ] && [ -s "$W/port.3" ]; do sleep 0.1; done; P=$(portlease claim); echo "$P" > "$W/port.4"; ` +
        `for _ in $(seq 300); do [ -e "$W/go" ] && break; sleep 0.1; done; portlease release > "$W/released"; sleep "$S" ) &\nwait\n`,
    );
    const ports = await expectLiveAndDistinct([...three, 'port.4']);
    writeFileSync(join(work, 'go'), '');
    await waitFor(() => portsIn('released').length > 0, 'the fourth job to release', 30_000);
    expect(portsIn('released')).toEqual([ports[3]]);
    const claims = await listClaims(stateDir);
    for (const port of ports.slice(0, 3)) expect(claims.find((claim) => claim.ports.includes(port))?.status).toBe('live');
  }, 60_000);

  it.skipIf(skipNote(['python3', 'timeout']) !== '')(
    'the served port: ( P=$(portlease claim); exec python3 -m http.server $P ) & is really bound' + skipNote(['python3', 'timeout']),
    async () => {
      start(
        `( P=$(portlease claim); echo "$P" > "$W/port.1"; exec timeout "$S" python3 -m http.server "$P" --bind 127.0.0.1 --directory "$W" ) > /dev/null 2>&1 &\n${exitOnceClaimed(['port.1'])}`,
      );
      const [port] = await expectLiveAndDistinct(['port.1']);
      await waitFor(async () => !(await canBind(port!, '127.0.0.1')), `python to bind ${port}`, 15_000);
    },
    60_000,
  );

  it('nohup bash -c "..." & with a reader and without one, the script exits', async () => {
    start(
      `nohup bash -c 'P=$(portlease claim); echo "$P" > "$W/port.1"; exec sleep "$S"' > /dev/null 2>&1 &\n` +
        `nohup bash -c 'portlease claim > "$W/port.2"; exec sleep "$S"' > /dev/null 2>&1 &\n${exitOnceClaimed(['port.1', 'port.2'])}`,
    );
    await expectLiveAndDistinct(['port.1', 'port.2']);
  }, 60_000);

  it('execSync from a Node child three times in a row (sh -c of more than one command): three distinct ports, owned by node', async () => {
    const program = `const { execSync } = require('node:child_process'); const fs = require('node:fs');
for (let i = 1; i <= 3; i++) fs.writeFileSync(process.env.W + '/port.' + i, execSync('cd / && portlease claim'));
setTimeout(() => {}, Number(process.env.S) * 1000);`;
    start(`exec '${process.execPath}' -e "${program.replaceAll('"', '\\"')}"\n`);
    await expectLiveAndDistinct(three);
  }, 60_000);

  it.skipIf(skipNote(['python3']) !== '')(
    'Python subprocess.run(shell=True) three times, with and without capturing the output' + skipNote(['python3']),
    async () => {
      const program = `import os, subprocess, time
w = os.environ['W']
for i in (1, 2):
    out = subprocess.run('cd / && portlease claim', shell=True, capture_output=True, text=True, check=True).stdout
    open(f'{w}/port.{i}', 'w').write(out)
subprocess.run(f'cd / && portlease claim > {w}/port.3', shell=True, check=True)
time.sleep(int(os.environ['S']))`;
      writeFileSync(join(work, 'job.py'), program);
      start(`exec python3 "$W/job.py"\n`);
      await expectLiveAndDistinct(three);
    },
    60_000,
  );

  it.skipIf(skipNote(['timeout']) !== '')(
    'timeout 30 portlease claim three times, then the server' + skipNote(['timeout']),
    async () => {
      start(
        `for i in 1 2 3; do timeout 30 portlease claim > "$W/port.$i"; done\nP=$(timeout 30 portlease claim); echo "$P" > "$W/port.4"\nexec sleep "$S"\n`,
      );
      await expectLiveAndDistinct([...three, 'port.4']);
    },
    60_000,
  );

  it.skipIf(skipNote(['flock', '/usr/bin/time', 'runuser']) !== '' || !isRoot)(
    'flock, /usr/bin/time and runuser around the claim' +
      skipNote(['flock', '/usr/bin/time', 'runuser']) +
      (isRoot ? '' : ' (skipped: runuser needs root)'),
    async () => {
      start(
        `flock "$W/lock" portlease claim > "$W/port.1"\n/usr/bin/time -o /dev/null portlease claim > "$W/port.2"\n` +
          `runuser -u root -- portlease claim > "$W/port.3"\nexec sleep "$S"\n`,
      );
      await expectLiveAndDistinct(three);
    },
    60_000,
  );

  it.skipIf(skipNote(['stdbuf', 'setsid']) !== '')(
    'env, nice, stdbuf and setsid in background jobs' + skipNote(['stdbuf', 'setsid']),
    async () => {
      start(
        `( env A=1 portlease claim > "$W/port.1"; exec sleep "$S" ) &\n( P=$(nice -n 1 portlease claim); echo "$P" > "$W/port.2"; exec sleep "$S" ) &\n` +
          `( stdbuf -oL portlease claim > "$W/port.3"; exec sleep "$S" ) &\n( P=$(setsid portlease claim); echo "$P" > "$W/port.4"; exec sleep "$S" ) &\n` +
          `setsid bash -c 'portlease claim > "$W/port.5"; exec sleep "$S"' &\n`,
      );
      await expectLiveAndDistinct([...three, 'port.4', 'port.5']);
    },
    60_000,
  );

  it.skipIf(skipNote(['xargs']) !== '')(
    'xargs -P3 running sh -c with and without a reader' + skipNote(['xargs']),
    async () => {
      start(
        `seq 3 | xargs -P3 -I{} sh -c 'P=$(portlease claim); echo "$P" > "$W/port.$1"; exec sleep "$S"' _ {} &\n` +
          `seq 4 6 | xargs -P3 -I{} sh -c 'cd / && portlease claim > "$W/port.$1"; exec sleep "$S"' _ {}\n`,
      );
      await expectLiveAndDistinct([...three, 'port.4', 'port.5', 'port.6']);
    },
    60_000,
  );

  it.skipIf(skipNote(['make']) !== '')(
    'make -j3: claim && exec server in each recipe' + skipNote(['make']),
    async () => {
      writeFileSync(
        join(work, 'Makefile'),
        'all: a b c d\na b c:\n\t@P=$$(portlease claim) && echo $$P > "$$W/port.$@" && exec sleep "$$S"\n' +
          'd:\n\t@cd / && portlease claim > "$$W/port.$@"; sleep "$$S"\n',
      );
      start(`exec make -s -j4 -C "$W"\n`);
      await expectLiveAndDistinct(['port.a', 'port.b', 'port.c', 'port.d']);
    },
    60_000,
  );

  it.skipIf(skipNote(['parallel']) !== '')(
    'GNU parallel running three jobs' + skipNote(['parallel']),
    async () => {
      start(`exec parallel -j3 'P=$(portlease claim); echo "$P" > "$W/port.{}"; exec sleep "$S"' ::: 1 2 3\n`);
      await expectLiveAndDistinct(three);
    },
    60_000,
  );
});

describe.runIf(process.platform === 'linux')('the CLI in a PID namespace of its own', () => {
  let stateDir: string;
  let cleanup: () => void;
  beforeEach(() => ({ dir: stateDir, cleanup } = makeStateDir()));
  afterEach(() => cleanup());

  const ns = ['--pid', '--fork', '--mount-proc'];

  it.skipIf(unshareNote !== '')(
    `as PID 1: a usage error without --ttl or --pid, a TTL claim with --ttl${unshareNote}`,
    async () => {
      const refused = await exited(
        spawn('unshare', [...ns, process.execPath, cliPath, 'claim', '--state-dir', stateDir], { stdio: ['ignore', 'pipe', 'pipe'] }),
      );
      expect(refused.code).toBe(2);
      expect(refused.stderr).toMatch(/PID 1 of its PID namespace.*--ttl/);
      expect(refused.stdout).toBe('');
      const released = await exited(
        spawn('unshare', [...ns, process.execPath, cliPath, 'release', '--state-dir', stateDir], { stdio: ['ignore', 'pipe', 'pipe'] }),
      );
      expect(released.code).toBe(2);
      const timed = await exited(
        spawn('unshare', [...ns, process.execPath, cliPath, 'claim', '--ttl', '1m', '--json', '--state-dir', stateDir], {
          stdio: ['ignore', 'pipe', 'pipe'],
        }),
      );
      expect(timed.stderr).toBe('');
      expect(timed.code).toBe(0);
      const lease = JSON.parse(timed.stdout) as { ports: number[]; expiresAt: string | null };
      expect(lease.expiresAt).not.toBeNull();
    },
    60_000,
  );

  it.skipIf(unshareNote !== '')(
    `under a shell that is PID 1, and with the parent outside the namespace (ppid 0)${unshareNote}`,
    async () => {
      // Listed from inside, where the recorded PIDs mean what they meant to the CLI.
      const cli = `'${process.execPath}' '${cliPath}'`;
      const inside = `P=$(${cli} claim --state-dir '${stateDir}'); sleep 1.5; ${cli} list --json --state-dir '${stateDir}'`;
      const result = await exited(spawn('unshare', [...ns, 'sh', '-c', inside], { stdio: ['ignore', 'pipe', 'pipe'] }), 30_000);
      expect(result.stderr).toBe('');
      const claims = (JSON.parse(result.stdout) as { claims: Array<{ pid: number; status: string }> }).claims;
      expect(claims).toEqual([expect.objectContaining({ pid: 1, status: 'live' })]);

      if (!has('nsenter')) {
        console.warn('skipped the ppid-0 half: nsenter not installed');
        return;
      }
      const holder = spawn('unshare', [...ns, 'sleep', '10'], { stdio: 'ignore' });
      try {
        let target: number | undefined;
        await waitFor(
          () => {
            const children = spawnSync('pgrep', ['-P', String(holder.pid), 'sleep'], { encoding: 'utf8' }).stdout.trim();
            target = children === '' ? undefined : Number(children);
            return target !== undefined;
          },
          'the namespace to start',
          10_000,
        );
        const entered = await exited(
          spawn('nsenter', ['-t', String(target), '-p', '-m', process.execPath, cliPath, 'claim', '--json', '--state-dir', stateDir], {
            stdio: ['ignore', 'pipe', 'pipe'],
          }),
        );
        expect(entered.stderr).toBe('');
        expect(entered.code).toBe(0);
        expect((JSON.parse(entered.stdout) as { pid: number }).pid).toBe(1); // that namespace's init
      } finally {
        holder.kill('SIGKILL');
        await exited(holder);
        expect(isRunning(holder.pid!)).toBe(false);
      }
    },
    60_000,
  );
});
