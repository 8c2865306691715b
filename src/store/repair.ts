/**
 * What the store does with a state file it cannot fully use: set a corrupt one aside (kept
 * for inspection), or keep a copy of one whose malformed records were left out. Each warns
 * once per file and process.
 */
import { renameSync, type Stats, statSync, writeFileSync } from 'node:fs';
import { STATE_IO_ADVICE, StateIoError } from '../base/errors.js';
import { errnoCode, readRegularFile } from '../base/fs.js';
import { processSlot } from '../base/process-state.js';
import { warnOnce } from '../base/warnings.js';
import { generationAt, MAX_STATE_BYTES } from './state-file.js';
import { debugLetGo } from '../base/debug.js';

/** Code of the warning emitted when a state file is set aside or had malformed records left out. */
export const CORRUPT_STATE_WARNING = 'PORTLEASE_STATE_CORRUPT';

/**
 * Some records were malformed and left out (each costs itself only): keep a copy of the
 * file for inspection, once per generation, and warn once per process. The copy is read
 * without blocking (regular files only) and written to a new file next to it, never
 * through a planted name.
 */
export function keepDamagedCopy(path: string, gen: string, damaged: number): void {
  const copyPath = `${path}.damaged-${gen}`;
  // Once per damaged generation and process (process state: two copies of portlease agree).
  const reported = processSlot('damage-reported.v1', () => new Set<string>());
  if (reported.has(copyPath)) return;
  reported.add(copyPath);
  try {
    const bytes = readRegularFile(path, MAX_STATE_BYTES);
    // 'wx': fails if anything (a file, a symlink) is already at that name.
    writeFileSync(copyPath, bytes, { flag: 'wx', mode: 0o600 });
  } catch (error) {
    // Kept already (or cannot be kept): the warning still tells.
    debugLetGo('store/repair', error);
  }
  warnAbout(path, `held ${damaged} malformed record(s); they were left out and the rest kept. A copy is at ${copyPath}.`);
}

/** What tells the file found corrupt from another one: its inode (while the corrupt file exists it is not reused), or its generation. */
export type SetAsideExpectation = { inode: Pick<Stats, 'dev' | 'ino'> } | { generation: string };

/**
 * Renames the file in place aside (kept for inspection), if it is still the file found
 * corrupt. A holder paused before this rename may find another file in place by then (its
 * successor's, fresh and valid): such a file is put back at once, over anything created in
 * the meantime (which can only be younger than it), and nothing is read from the check
 * that went stale.
 */
export function setAside(path: string, reason: string, expected: SetAsideExpectation): void {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const asidePath = `${path}.corrupt-${stamp}-${process.pid}`;
  try {
    renameSync(path, asidePath);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return;
    throw new StateIoError(`Cannot set aside the corrupt state file ${path}: ${(error as Error).message}. ${STATE_IO_ADVICE}`, error);
  }
  if (!isExpected(asidePath, expected)) {
    try {
      renameSync(asidePath, path);
    } catch (error) {
      // Gone meanwhile: nothing to put back.
      debugLetGo('store/repair', error);
    }
    return;
  }
  warnAbout(path, `was ${reason}; it was moved to ${asidePath} and a fresh one started.`);
}

function isExpected(movedPath: string, expected: SetAsideExpectation): boolean {
  if ('generation' in expected) return generationAt(movedPath) === expected.generation;
  const moved = statSync(movedPath, { throwIfNoEntry: false });
  return moved === undefined || (moved.dev === expected.inode.dev && moved.ino === expected.inode.ino);
}

function warnAbout(path: string, what: string): void {
  warnOnce(`state-corrupt:${path}`, `portlease: the state file ${path} ${what}`, CORRUPT_STATE_WARNING);
}
