import { PortAllocator } from '../api/allocator.js';
import { asUsage } from './args.js';

/** The allocator for `--state-dir` (or the library default); a malformed directory is bad usage. */
export function openAllocator(command: string, stateDir: string | undefined): PortAllocator {
  return asUsage(command, () => new PortAllocator({ stateDir }));
}
