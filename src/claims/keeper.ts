/**
 * Keepers: small processes that hold a claim's port tokens (ports/port-tokens.ts) for an owner
 * that cannot hold them itself. A claim made for the process that makes it keeps its tokens in
 * that process, and the kernel frees them when it dies. A claim for another process (the shell
 * of `PORT=$(portlease claim)`, `--pid`, `exec`'s command) or with a TTL outlives its claimer,
 * so the claimer hands copies of its token sockets to a keeper: `/bin/sh` running the script
 * below, in a session of its own, holding them as inherited descriptors until the owner is gone
 * (checked every second, by PID and start time) or the TTL has passed, or until a release of
 * the same user stops it. The keeper needs nothing but `sh`, `sleep` and `/proc`, and costs a
 * few hundred kilobytes.
 *
 * Which keeper holds a claim's tokens is kept in `keepers-<host>/<claim id>` in the state
 * directory (its PID and start time), so that any process of the user can stop it.
 */
import { spawn } from 'node:child_process';
import { lstatSync, mkdirSync, openSync, readdirSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { isResourceExhaustion, ResourcesExhaustedError } from '../base/errors.js';
import { closeQuietly, errnoCode, READ_NO_FOLLOW_FLAGS, replaceFile, unlinkQuietly } from '../base/fs.js';
import { inheritableFds, isExitedState, liveProcessInGroup, procShowsOwnPidNamespace, readProcStat } from '../base/proc.js';
import type { PortTokens } from '../ports/port-tokens.js';

/**
 * The keeper: `$1` the owner's PID, `$2` its start time (`-` if unknown), `$3` seconds to live
 * (`-` for as long as the owner), `$4` `proc` to check the owner through /proc, `kill` where
 * /proc does not show our PID namespace, `$5` its record in the state directory. The token
 * sockets are fds 3 and up; nothing else is open. It ends, and the kernel frees the tokens, when
 * its record is removed (a release, a reap, the state directory deleted), when the owner is
 * gone, or once the TTL has passed. Fields of /proc/<pid>/stat are read after the last ')'
 * (the command name may hold anything); the 20th after it is the start time.
 */
const KEEPER_SCRIPT = `set -f
pid=$1 start=$2 ttl=$3 mode=$4 record=$5
while [ -e "$record" ]; do
  if [ "$ttl" != - ]; then
    [ "$ttl" -gt 0 ] || exit 0
    ttl=$((ttl - 1))
  elif [ "$mode" = proc ]; then
    IFS= read -r stat < "/proc/$pid/stat" || exit 0
    stat=\${stat##*) }
    set -- $stat
    case $1 in Z|X) exit 0 ;; esac
    [ "$start" = - ] || [ "\${20}" = "$start" ] || exit 0
  else
    kill -0 "$pid" 2>/dev/null || exit 0
  fi
  sleep 1
done
`;

/** Who holds a claim's tokens until when. */
export interface KeeperTerms {
  /** The owner whose life the tokens follow (ignored with a TTL). */
  pid: number;
  startTime: string | undefined;
  /** How long the tokens live, from now, whatever the owner does. */
  ttlMs: number | undefined;
}

/** The largest TTL, in seconds, the keeper counts down (a shell's arithmetic is at least 32 bits). */
const MAX_TTL_SECONDS = 2 ** 31 - 1;
/** How long a stop waits for a keeper (and its `sleep`) to be gone. */
const STOP_WAIT_MS = 2000;
// How long a keeper may take to start; a record still 'starting' after this was left by a killed claimer.
const STARTING_MAX_MS = 60_000;
// A record this long is not one portlease wrote.
const MAX_RECORD_BYTES = 128;

/** The file naming the keeper of claim `id` in `keeperDir`. */
function recordPath(keeperDir: string, id: string): string {
  return join(keeperDir, `${id}.keeper`);
}

/** What a keeper's record says: the keeper, and the owner it watches (`undefined` with a TTL). */
interface KeeperRecord {
  pid: number;
  startTime: string;
  owner: { pid: number; startTime: string } | undefined;
}

function formatRecord(record: KeeperRecord | 'starting'): string {
  if (record === 'starting') return 'starting\n';
  const owner = record.owner === undefined ? '- -' : `${record.owner.pid} ${record.owner.startTime}`;
  return `${record.pid} ${record.startTime} ${owner}\n`;
}

function parseRecord(text: string): KeeperRecord | 'starting' | undefined {
  if (text === 'starting\n') return 'starting';
  const match = /^(\d{1,10}) (\d{1,20}|-) (?:(\d{1,10}) (\d{1,20}|-)|- -)\n$/.exec(text);
  if (match === null) return undefined;
  const owner = match[3] === undefined ? undefined : { pid: Number(match[3]), startTime: match[4]! };
  return { pid: Number(match[1]), startTime: match[2]!, owner };
}

function readRecord(path: string): KeeperRecord | 'starting' | undefined {
  try {
    const fd = openSync(path, READ_NO_FOLLOW_FLAGS);
    try {
      const buffer = Buffer.alloc(MAX_RECORD_BYTES);
      return parseRecord(buffer.toString('latin1', 0, readSync(fd, buffer, 0, buffer.length, 0)));
    } finally {
      closeQuietly(fd);
    }
  } catch {
    return undefined;
  }
}

/** Whether the process `pid` that started at `startTime` still runs (and is not a zombie). */
function isRunning(pid: number, startTime: string): boolean {
  const stat = readProcStat(pid);
  return stat !== undefined && !isExitedState(stat.state) && (startTime === '-' || stat.startTime === startTime);
}

/**
 * Starts a keeper that holds copies of `tokens` on the `terms`, and records it for claim
 * `id`. The caller may then let go of its own copies. Unix only.
 *
 * @throws {ResourcesExhaustedError} when no process can be started (EAGAIN, EMFILE, ...).
 */
export async function startKeeper(tokens: PortTokens, terms: KeeperTerms, keeperDir: string, id: string, fileMode: number): Promise<void> {
  try {
    mkdirSync(keeperDir, { mode: 0o700 });
  } catch (error) {
    if (errnoCode(error) !== 'EEXIST') throw error;
  }
  const record = recordPath(keeperDir, id);
  // The keeper runs while its record exists: it must exist before the keeper looks.
  replaceFile(record, formatRecord('starting'), fileMode);
  const fds = tokens.fds();
  // Descriptors this process inherited without close-on-exec (a make jobserver, a pipe a shell
  // waits on) would leak into the keeper and keep, say, `$(...)` waiting for it: every one of
  // them is replaced by /dev/null.
  const highest = Math.max(2 + fds.length, ...inheritableFds());
  const stdio = Array.from({ length: highest + 1 }, (_, index) => (index >= 3 && index < 3 + fds.length ? fds[index - 3]! : 'ignore'));
  const seconds = terms.ttlMs === undefined ? '-' : String(Math.min(MAX_TTL_SECONDS, Math.ceil(terms.ttlMs / 1000)));
  const mode = procShowsOwnPidNamespace() ? 'proc' : 'kill';
  const args = [String(terms.pid), terms.startTime ?? '-', seconds, mode, record];
  const child = spawn('/bin/sh', ['-c', KEEPER_SCRIPT, 'portlease-keeper', ...args], {
    stdio,
    detached: true,
    cwd: '/',
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  child.unref();
  let pid: number;
  try {
    pid = await new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('spawn', () => resolve(child.pid!));
    });
  } catch (error) {
    unlinkQuietly(record);
    if (isResourceExhaustion(error) || errnoCode(error) === 'EAGAIN') {
      throw new ResourcesExhaustedError(error as NodeJS.ErrnoException, 'start a keeper process');
    }
    throw error;
  }
  const owner = terms.ttlMs === undefined ? { pid: terms.pid, startTime: terms.startTime ?? '-' } : undefined;
  replaceFile(record, formatRecord({ pid, startTime: readProcStat(pid)?.startTime ?? '-', owner }), fileMode);
}

/** Kills the keeper's process group (the shell and the `sleep` it waits on both hold the tokens) and waits until it is gone. */
async function killKeeper(keeper: KeeperRecord): Promise<void> {
  // The same process: its PID, its start time, and still the leader of its own group.
  if (!isRunning(keeper.pid, keeper.startTime) || readProcStat(keeper.pid)?.pgrp !== keeper.pid) return;
  try {
    process.kill(-keeper.pid, 'SIGKILL');
  } catch {
    return;
  }
  const deadline = performance.now() + STOP_WAIT_MS;
  while (liveProcessInGroup(keeper.pid) && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
}

/**
 * Stops the keeper of claim `id`, if any, and waits until its tokens are free (a couple of
 * seconds at most). Never throws: a keeper that cannot be stopped ends by itself within a
 * second of its record's removal.
 */
export async function stopKeeper(keeperDir: string, id: string): Promise<void> {
  const path = recordPath(keeperDir, id);
  const record = readRecord(path);
  unlinkQuietly(path);
  if (record !== undefined && record !== 'starting') await killKeeper(record);
}

/**
 * Stops the keepers whose owner is gone (they would let go within a second anyway) and
 * removes the records of keepers that ended: run when a claim finds a token held, and by
 * `reap`. Resolves to how many keepers it stopped.
 */
export async function sweepKeepers(keeperDir: string): Promise<number> {
  let names: string[];
  try {
    names = readdirSync(keeperDir);
  } catch {
    return 0;
  }
  let stopped = 0;
  for (const name of names) {
    if (!name.endsWith('.keeper')) continue;
    const path = join(keeperDir, name);
    const record = readRecord(path);
    // A claimer killed between writing the record and starting its keeper left this.
    if (record === 'starting' && Date.now() - (lstatSync(path, { throwIfNoEntry: false })?.mtimeMs ?? 0) > STARTING_MAX_MS)
      unlinkQuietly(path);
    if (record === 'starting') continue;
    if (record === undefined || !isRunning(record.pid, record.startTime)) {
      unlinkQuietly(path);
      continue;
    }
    if (record.owner === undefined || isRunning(record.owner.pid, record.owner.startTime)) continue;
    unlinkQuietly(path);
    await killKeeper(record);
    stopped++;
  }
  return stopped;
}
