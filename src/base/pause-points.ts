import { processSlot } from './process-state.js';

/**
 * The steps of a state change between which a paused process must do no harm:
 * - `append`: the change is computed, its line not yet written;
 * - `read-back`: the line is written, not yet read back;
 * - `seal`: a new generation file is written, the old one not yet sealed;
 * - `publish`: the seal is accepted, the new file not yet renamed into place;
 * - `queued`: a claim request is in the queue, its owner not yet waiting on it;
 * - `settle`: a holder's line with queued claims is accepted, their requests not yet removed.
 */
export type PausePoint = 'append' | 'read-back' | 'seal' | 'publish' | 'queued' | 'settle';

// Process state: the test entry (dist/testing.js) and the bundle a fixture claims through are
// two copies of this module, and must agree on one request.
function pauseRequest(): { point: PausePoint | undefined } {
  return processSlot('pause-point.v1', () => ({ point: undefined }));
}

/**
 * For tests of the write fencing only, through the test entry: stop this process (SIGSTOP)
 * the first time it reaches `point`; the test resumes it with SIGCONT. Unix only.
 */
export function pauseAt(point: PausePoint | undefined): void {
  if (point !== undefined && process.platform === 'win32') throw new Error('pauseAt needs SIGSTOP, which Windows does not have.');
  pauseRequest().point = point;
}

/**
 * Stops this process (SIGSTOP, as a suspend or a paused VM would) the first time it reaches
 * the point a test asked for with {@link pauseAt}. Inert otherwise.
 */
export function pausePoint(point: PausePoint): void {
  const request = pauseRequest();
  if (request.point !== point) return;
  request.point = undefined;
  process.kill(process.pid, 'SIGSTOP');
}
