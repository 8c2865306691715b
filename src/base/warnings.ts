/** Warnings portlease emits (`process.emitWarning`), each at most once per process. */
import { processSlot } from './process-state.js';

/**
 * Emits `message` as a warning with `code`, unless one with the same `key` was emitted before
 * in this process (by any copy of portlease loaded in it).
 */
export function warnOnce(key: string, message: string, code: string): void {
  const warned = processSlot('warned.v1', () => new Set<string>());
  if (warned.has(key)) return;
  warned.add(key);
  process.emitWarning(message, { code });
}
