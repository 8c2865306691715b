/**
 * The debug channel: `NODE_DEBUG=portlease` prints what best-effort code let go (a file it
 * could not remove, a cache it could not write), for a maintainer chasing a field report.
 * Costs nothing when off.
 */
import { debuglog } from 'node:util';

const log = debuglog('portlease');

/** Notes on the debug channel that `what`, in `where`, failed with `error` and was let go. */
export function debugLetGo(where: string, error: unknown): void {
  if (!log.enabled) return;
  const reason = error instanceof Error ? `${(error as NodeJS.ErrnoException).code ?? error.name}: ${error.message}` : String(error);
  log('%s: let go of %s', where, reason);
}
