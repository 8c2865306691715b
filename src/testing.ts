/**
 * The internals the multi-process test fixtures use, in one entry point (`dist/testing.js`):
 * a module renamed or split then breaks this file's type check, not only the slow tests that
 * run the fixtures. Not part of the public interface: package.json does not export it.
 */
export { currentPidNamespace } from './liveness.js';
export { StateLock } from './lock.js';
export { probeBeacons } from './beacon-probe.js';
export { ensureOwnBeacon } from './owner-beacon.js';
export { findBusyPorts } from './probe.js';
export { statePaths } from './state-dir.js';
