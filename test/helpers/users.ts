/**
 * Real users and namespaces for the cross-user suites: two system users made with `useradd`
 * (root can), processes started as them, and a copy of the build they can read.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nobodyReadableCopy } from './nobody.js';

/** What test/fixtures/user-claimer.mjs prints: the ports it claimed and bound, or its error. */
export interface Claimed {
  uid: number;
  pid?: number;
  ports?: number[];
  bound?: boolean;
  error?: string;
  code?: string;
}

/** A user the tests act as. */
export interface TestUser {
  name: string;
  uid: number;
  gid: number;
}

/** The test users' names; test/global-setup.ts removes the ones a run made. */
export const TEST_USER_NAMES = ['portlease-test-a', 'portlease-test-b'] as const;

function idOf(name: string, flag: '-u' | '-g'): number | undefined {
  const result = spawnSync('id', [flag, name], { encoding: 'utf8' });
  return result.status === 0 ? Number(result.stdout.trim()) : undefined;
}

let reason: string | undefined | null = null;
/** Why two real users cannot be had here (not Linux, not root, no useradd), or `undefined` when they can. */
export function twoUsersUnavailable(): string | undefined {
  if (reason !== null) return reason;
  reason = undefined;
  if (process.platform !== 'linux') reason = 'skipped: needs Linux';
  else if (process.getuid?.() !== 0) reason = 'skipped: needs root to create two users (useradd) and act as them';
  else if (spawnSync('useradd', ['--help'], { stdio: 'ignore' }).error !== undefined) reason = 'skipped: useradd is not installed';
  return reason;
}

/**
 * The two test users, made with `useradd --system` (no home, no login) the first time; test
 * files running at once may both make them, and the one that comes second finds them.
 */
export function testUsers(): [TestUser, TestUser] {
  const users = TEST_USER_NAMES.map((name) => {
    if (idOf(name, '-u') === undefined) {
      const made = spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', name], {
        encoding: 'utf8',
      });
      // 9: the name exists (another test file made it a moment ago).
      if (made.status !== 0 && made.status !== 9) throw new Error(`useradd ${name} failed: ${made.stderr}`);
    }
    return { name, uid: idOf(name, '-u')!, gid: idOf(name, '-g')! };
  });
  return users as [TestUser, TestUser];
}

/** Whether user `name` exists here. */
export function userExists(name: string): boolean {
  return idOf(name, '-u') !== undefined;
}

/** A directory like `/tmp`, mode 1777: every user may create entries, none may remove others'. */
export function sharedTmp(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'portlease-users-'));
  chmodSync(dir, 0o1777);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 }) };
}

/** The environment of a process of `user`: the readable build, its default state directory under `tmp`, no HOME of its own. */
export function userEnv(tmp: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: '/nonexistent',
    TMPDIR: tmp,
    PORTLEASE_DIST: nobodyReadableCopy().distEntry,
    ...extra,
  };
}

/** Starts `node <readable fixture> ...args` as `user` (root when undefined), stdout piped. */
export function spawnFixtureAs(user: TestUser | undefined, fixture: string, args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, [join(nobodyReadableCopy().fixturesDir, fixture), ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(user === undefined ? {} : { uid: user.uid, gid: user.gid }),
  });
}

/** The first line `child` prints, parsed as JSON (rejects on exit without one, or after `timeoutMs`). */
export function firstJsonLine<T>(child: ChildProcess, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new Error(`no line within ${timeoutMs} ms; stderr: ${err}`)), timeoutMs);
    child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const end = out.indexOf('\n');
      if (end === -1) return;
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out.slice(0, end)) as T);
      } catch (error) {
        reject(new Error(`not JSON: ${out.slice(0, end)} (${(error as Error).message}); stderr: ${err}`));
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code ?? signal}) before a line; stderr: ${err}`));
    });
  });
}
