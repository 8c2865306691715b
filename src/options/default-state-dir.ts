/**
 * Where the state lives when nobody says: `<tmp>/portlease-<uid>`, unless another user took
 * that name first.
 */
import { lstatSync, mkdtempSync, rmSync, type Stats } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import envPaths from 'env-paths';
import { processCache } from '../base/process-state.js';
import { warnOnce } from '../base/warnings.js';

/** Environment variable that overrides the default state directory. */
export const STATE_DIR_ENV = 'PORTLEASE_STATE_DIR';

/** Code of the warning emitted when the default state directory was taken by someone else. */
export const STATE_DIR_TAKEN_WARNING = 'PORTLEASE_STATE_DIR_TAKEN';

const GROUP_OR_OTHER_WRITE = 0o022;

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path);
  } catch {
    return undefined;
  }
}

/** Why `path` cannot be this user's directory although nothing of ours made it so, if it cannot. */
function takenBecause(path: string, uid: number): string | undefined {
  const stats = lstatOrUndefined(path);
  if (stats === undefined) return undefined;
  if (stats.isSymbolicLink()) return 'is a symbolic link';
  if (!stats.isDirectory()) return 'is not a directory';
  if (stats.uid !== uid) return `is owned by uid ${stats.uid}`;
  return undefined;
}

/** Whether `dir` is a directory only `uid` can write, so a state directory inside it is safe. */
function isPrivateTo(dir: string | undefined, uid: number): dir is string {
  if (dir === undefined || dir === '') return false;
  const stats = lstatOrUndefined(dir);
  return stats !== undefined && stats.isDirectory() && stats.uid === uid && (stats.mode & GROUP_OR_OTHER_WRITE) === 0;
}

/**
 * A directory of this user's that no other user can take: the per-user runtime directory
 * (`$XDG_RUNTIME_DIR`, a tmpfs on systemd machines), else the user's cache under a home it
 * owns, else, under attack on all of those, a directory of this process only, removed at exit.
 */
function fallbackDir(env: NodeJS.ProcessEnv, uid: number): string {
  if (isPrivateTo(env.XDG_RUNTIME_DIR, uid)) return join(env.XDG_RUNTIME_DIR, 'portlease');
  // A HOME of / (service accounts) is not a home to keep files in.
  const home = env.HOME;
  if (home !== '/' && isPrivateTo(home, uid)) return join(home, '.cache', 'portlease');
  return processCache('own-state-dir', () => {
    const dir = mkdtempSync(join(tmpdir(), `portlease-${uid}-`));
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    return dir;
  });
}

/**
 * The default state directory: the environment variable, else a temporary directory of this
 * user's own: `<tmp>/portlease-<uid>` where there are uids, env-paths' `temp` on Windows.
 *
 * A temporary directory lives as long as the boot on most systems, like the claims it holds.
 * It is named by uid, not as env-paths names it on Linux (after the basename of HOME):
 * service accounts whose HOME is / or /nonexistent would share one directory, and the same
 * user with another HOME (sudo, env -i) would not coordinate with itself.
 *
 * If another user created `<tmp>/portlease-<uid>` first (or planted a link there), this user
 * falls back to a directory no one else can take, with a warning: another user cannot make
 * this user's claims fail, and the port tokens keep claims of different directories apart.
 */
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env[STATE_DIR_ENV];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const uid = process.getuid?.();
  // Windows: the temporary directory is already per user.
  if (uid === undefined) return envPaths('portlease', { suffix: '' }).temp;
  const dir = join(tmpdir(), `portlease-${uid}`);
  const taken = takenBecause(dir, uid);
  if (taken === undefined) return dir;
  const fallback = fallbackDir(env, uid);
  warnOnce(
    `state-dir-taken:${dir}`,
    `portlease: the default state directory ${dir} ${taken}, so someone else made it; using ${fallback} instead. Have it removed, or set ${STATE_DIR_ENV}.`,
    STATE_DIR_TAKEN_WARNING,
  );
  return fallback;
}
