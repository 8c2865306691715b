import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect } from 'vitest';
import { PortAllocator } from '../../src/index.js';
import { closeOwnBeacons } from '../../src/liveness/owner-beacon.js';
import { distEntry, exited, fixturesDir, killAll } from '../helpers/processes.js';
import { freeRunBase } from '../helpers/sockets.js';
import { stateTest, storedClaims } from '../helpers/state-dir.js';
import { runBash } from '../cli/run-cli.js';

const it = stateTest;

// Containers, `unshare` and CI jobs in containers may share one state directory. A PID
// recorded in one PID namespace means nothing (or another process) in the other: a claim
// from another namespace must never be judged by its PID there.
const canUnshare = process.platform === 'linux' && spawnSync('unshare', ['--pid', '--fork', '--mount-proc', 'true']).status === 0;
const skipReason = 'skipped: unshare --pid needs Linux and root (or user namespaces)';

const children: ChildProcess[] = [];
afterEach(() => {
  killAll(children.splice(0));
  closeOwnBeacons();
});

interface InsideReport {
  ports?: number[];
  pid?: number;
  pidNs?: string;
  error?: string;
}

/** Starts the claimer as PID 1 of a new PID namespace; resolves to what it reports. */
async function claimInNewNamespace(stateDir: string, base: number, skewMs = 0): Promise<{ child: ChildProcess; report: InsideReport }> {
  const child = spawn(
    'unshare',
    [
      '--pid',
      '--fork',
      '--mount-proc',
      process.execPath,
      join(fixturesDir, 'namespace-claimer.mjs'),
      stateDir,
      String(base),
      String(skewMs),
    ],
    {
      env: { ...process.env, PORTLEASE_DIST: distEntry },
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  children.push(child);
  const line = await new Promise<string>((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error('no report from inside the namespace')), 20_000);
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      text += chunk;
      if (text.includes('\n')) {
        clearTimeout(timer);
        resolve(text.slice(0, text.indexOf('\n')));
      }
    });
  });
  return { child, report: JSON.parse(line) as InsideReport };
}

/** The namespace's PID 1 as this namespace sees it: the child `unshare --fork` made. */
function insidePid1(unshare: ChildProcess): number {
  const children = readFileSync(`/proc/${unshare.pid}/task/${unshare.pid}/children`, 'utf8').trim().split(/\s+/);
  return Number(children[0]);
}

describe.skipIf(!canUnshare)(`two PID namespaces sharing one state directory${canUnshare ? '' : ` (${skipReason})`}`, () => {
  it('never hands out a claimed port again, in either direction, before and after 30 s; a killed owner is reaped at once', async ({
    stateDir,
  }) => {
    const base = await freeRunBase(8);
    const outside = new PortAllocator({ stateDir });
    const mine = await outside.claim({ base });
    expect(mine.port).toBe(base);

    // Inside: PID 1 of its own namespace, which outside is init. It sees the outer claim live.
    const first = await claimInNewNamespace(stateDir, base);
    expect(first.report.error).toBeUndefined();
    expect(first.report.pid).toBe(1);
    expect(first.report.pidNs).not.toBe(readlinkSync('/proc/self/ns/pid'));
    expect(first.report.ports).toEqual([base + 1]);
    // A second namespace whose claim is 31 s old: past the age where start times are compared,
    // which used to reap it from outside (init's start time is not the inner PID 1's).
    const old = await claimInNewNamespace(stateDir, base, -31_000);
    expect(old.report.ports).toEqual([base + 2]);

    // Outside, PID 1 is init: a release by PID never reaches the inner PID 1's claims.
    expect(await outside.releaseWhere({ pid: 1 })).toEqual([]);
    // Outside: both inner claims hold, by their owners' beacons, and reaping leaves them.
    expect((await outside.claim({ base })).port).toBe(base + 3);
    expect(await outside.reap()).toBe(0);
    expect(
      storedClaims(outside.stateFile)
        .map((claim) => claim.start)
        .sort(),
    ).toEqual([base, base + 1, base + 2, base + 3]);

    // The first inner owner is killed (SIGKILL: no exit handler runs). Its beacon tells the
    // outside at once, whatever its PID means here.
    const pid1 = insidePid1(first.child);
    process.kill(pid1, 'SIGKILL');
    await exited(first.child);
    expect(await outside.reap()).toBe(1);
    expect(
      storedClaims(outside.stateFile)
        .map((claim) => claim.start)
        .sort(),
    ).toEqual([base, base + 2, base + 3]);
    expect((await outside.claim({ base })).port).toBe(base + 1);

    old.child.stdin!.end();
    await exited(old.child);
  });

  it('portlease claim inside and outside a namespace: two different ports, whichever claims first (the CLI, as in the report)', async ({
    stateDir,
  }) => {
    const base = await freeRunBase(4);
    const script = `set -eu
      A=$("$NODE" "$CLI" claim --base ${base} --state-dir "$STATE_DIR")
      B=$(unshare --pid --fork --mount-proc "$NODE" "$CLI" claim --base ${base} --ttl 1m --state-dir "$STATE_DIR")
      C=$(unshare --pid --fork --mount-proc bash -c '"$NODE" "$CLI" claim --base ${base} --ttl 1m --state-dir "$STATE_DIR"')
      D=$("$NODE" "$CLI" claim --base ${base} --state-dir "$STATE_DIR")
      echo $A $B $C $D`;
    const result = await runBash(script, { STATE_DIR: stateDir });
    expect(result.stderr).toBe('');
    const ports = result.stdout.trim().split(' ').map(Number);
    expect(ports).toHaveLength(4);
    expect(new Set(ports).size).toBe(4);
  });
});
