/**
 * The internals the multi-process test fixtures use, in one entry point (`dist/testing.js`):
 * a module renamed or split then breaks this file's type check, not only the slow tests that
 * run the fixtures. Not part of the public interface: package.json does not export it.
 */
export { pauseAt } from './base/pause-points.js';
export { currentPidNamespace } from './base/proc.js';
export { StateLock } from './store/lock.js';
export { probeBeacons } from './liveness/beacon-probe.js';
export { ensureOwnBeacon } from './liveness/owner-beacon.js';
export { findBusyPorts } from './ports/probe.js';
export { statePaths } from './store/state-dir.js';
