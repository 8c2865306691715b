/**
 * What the store does with a state file it cannot fully use: set a corrupt one aside (kept
 * for inspection), or keep a copy of one whose malformed records were left out. Each warns
 * once per file and process.
 */
import { constants, copyFileSync, linkSync, renameSync, type Stats, statSync, unlinkSync } from 'node:fs';
import { StateIoError } from './errors.js';

/** Code of the warning emitted when a state file is set aside or had malformed records left out. */
export const CORRUPT_STATE_WARNING = 'PORTLEASE_STATE_CORRUPT';

const warnedPaths = new Set<string>();
// Damaged generations this process has kept a copy of (or tried to).
const reportedDamage = new Set<string>();

function errnoCode(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | null)?.code;
}

/**
 * Some records were malformed and left out (each costs itself only): keep a copy of this
 * generation for inspection, once, and warn once per process.
 */
export function keepDamagedCopy(path: string, gen: string, damaged: number): void {
  const copyPath = `${path}.damaged-${gen}`;
  if (reportedDamage.has(copyPath)) return;
  reportedDamage.add(copyPath);
  try {
    copyFileSync(path, copyPath, constants.COPYFILE_EXCL);
  } catch {
    // Kept already (or cannot be kept): the warning still tells.
  }
  if (!warnedPaths.has(path)) {
    warnedPaths.add(path);
    process.emitWarning(
      `portlease: the state file ${path} held ${damaged} malformed record(s); they were left out and the rest kept. A copy is at ${copyPath}.`,
      { code: CORRUPT_STATE_WARNING },
    );
  }
}

/**
 * Renames the file in place aside (kept for inspection), if it is still `expected`, the
 * file found corrupt. A holder paused before this rename may find another file in place by
 * then (its successor's, fresh and valid): such a file is put back at once, and nothing
 * is read from the check that went stale.
 */
export function setAside(path: string, reason: string, expected: Pick<Stats, 'dev' | 'ino'>): void {
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const asidePath = `${path}.corrupt-${stamp}-${process.pid}`;
  try {
    renameSync(path, asidePath);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') return;
    throw new StateIoError(`Cannot set aside the corrupt state file ${path}: ${(error as Error).message}`, error);
  }
  const moved = statSync(asidePath, { throwIfNoEntry: false });
  if (moved !== undefined && (moved.dev !== expected.dev || moved.ino !== expected.ino)) {
    try {
      linkSync(asidePath, path);
      unlinkSync(asidePath);
    } catch {
      // A third process created a file meanwhile; what was moved stays aside, under its name.
    }
    return;
  }
  if (!warnedPaths.has(path)) {
    warnedPaths.add(path);
    process.emitWarning(`portlease: the state file ${path} was ${reason}; it was moved to ${asidePath} and a fresh one started.`, {
      code: CORRUPT_STATE_WARNING,
    });
  }
}
