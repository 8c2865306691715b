/**
 * portlease: race-free free TCP ports for many processes on one host.
 * This entry only re-exports; each concept lives in its own module.
 */
export { PortAllocator } from './api/allocator.js';
export type { ClaimElsewhere, ClaimInfo, Lease, ListeningSockets, ListOptions, ReleaseFilter, StickyPorts } from './api/allocator.js';
export { claimPorts, findSequentialPorts, getDefaultAllocator, listClaims, reapClaims, release } from './api/default-allocator.js';
export type { ClaimPortsOptions } from './api/default-allocator.js';
export { claimOnce } from './api/claim-once.js';
export {
  HostUnavailableError,
  isPortleaseError,
  LockTimeoutError,
  OwnerNotAliveError,
  PortleaseError,
  PortsExhaustedError,
  ResourcesExhaustedError,
  StateIoError,
  UnsafeStateDirError,
  UnsupportedError,
} from './base/errors.js';
export type { ExhaustedDetail, PortleaseErrorByCode, PortleaseErrorCode } from './base/errors.js';
export { STATE_DIR_ENV } from './options/options.js';
export type { AllocatorOptions, ClaimOptions, Protocol } from './options/options.js';
export type { PortExclusion, PortRange } from './base/port-numbers.js';
// Internals (lock, state file, liveness, probe) are deliberately not exported: the state
// format and lock layout may change between minor versions; the API above will not.
