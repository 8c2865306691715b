import { requestedPausePoint } from '../options/options.js';

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

let pending = process.platform === 'win32' ? undefined : requestedPausePoint();

/**
 * Stops this process (SIGSTOP, as a suspend or a paused VM would) the first time it reaches
 * the point a test named in `PORTLEASE_TEST_PAUSE_AT`; the test resumes it with SIGCONT.
 * Inert otherwise.
 */
export function pausePoint(point: PausePoint): void {
  if (pending !== point) return;
  pending = undefined;
  process.kill(process.pid, 'SIGSTOP');
}
