/**
 * The memory of sticky claims: which ports each label held last, in a small JSON file next
 * to the state file. Written only under the state lock, by write-and-rename, so readers
 * see the old file or the new one. It is a preference, not a claim: a stale or lost file
 * only means the normal search decides.
 */
import { readRegularFile, replaceFile } from '../base/fs.js';
import { isPortRun } from '../base/port-numbers.js';
import { debugLetGo } from '../base/debug.js';

/** The ports a label held last. */
export interface StickyEntry {
  /** The claim's label. */
  label: string;
  /** First port of the run it held. */
  start: number;
  /** How many ports. */
  count: number;
  /** When a claim with this label last got these ports, in ms since the epoch. */
  usedAt: number;
}

/** How many labels are remembered; the least recently used go first. */
export const MAX_STICKY_LABELS = 100;
const VERSION = 1;
// A hundred labels of at most 200 characters each.
const MAX_STICKY_BYTES = 2 ** 20;

function isEntry(value: unknown): value is StickyEntry {
  const entry = value as StickyEntry;
  return (
    typeof entry === 'object' &&
    entry !== null &&
    typeof entry.label === 'string' &&
    isPortRun(entry.start, entry.count) &&
    Number.isFinite(entry.usedAt)
  );
}

/** The remembered labels, most recently used first; none when the file is missing or damaged. */
export function readStickyMemory(path: string): StickyEntry[] {
  try {
    const parsed = JSON.parse(readRegularFile(path, MAX_STICKY_BYTES).toString('utf8')) as { version?: unknown; labels?: unknown };
    if (parsed.version !== VERSION || !Array.isArray(parsed.labels)) return [];
    return parsed.labels.filter(isEntry).slice(0, MAX_STICKY_LABELS);
  } catch {
    return [];
  }
}

/**
 * Records that `label` now holds `count` ports from `start`, as the most recently used,
 * keeping at most {@link MAX_STICKY_LABELS}. Call under the state lock. A failure to write
 * is swallowed: the claim stands, only the memory is not updated.
 */
export function rememberSticky(path: string, entry: StickyEntry, mode: number): void {
  const labels = [entry, ...readStickyMemory(path).filter((old) => old.label !== entry.label)].slice(0, MAX_STICKY_LABELS);
  try {
    replaceFile(path, `${JSON.stringify({ version: VERSION, labels })}\n`, mode);
  } catch (error) {
    // The claim stands; only the memory is not updated.
    debugLetGo('store/sticky-memory', error);
  }
}
