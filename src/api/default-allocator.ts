import { resolve } from 'node:path';
import { type ClaimInfo, type Lease, type ListOptions, PortAllocator } from './allocator.js';
import type { ClaimOptions } from '../options/options.js';
import { processSlot } from '../base/process-state.js';

/**
 * The allocators behind the module-level functions. Process state, not module state, so a
 * CommonJS and an ESM copy of portlease in one process share them (the methods used here are
 * the same in both copies).
 */
interface DefaultAllocators {
  fromEnvironment: PortAllocator | undefined;
  // One allocator per state directory: each keeps a copy of the state and a lock queue, which
  // only help if calls for the same directory share them.
  byDir: Map<string, PortAllocator>;
}

function defaultAllocators(): DefaultAllocators {
  return processSlot('default-allocators.v1', (): DefaultAllocators => ({ fromEnvironment: undefined, byDir: new Map() }));
}

/**
 * The allocator behind the module-level functions: default settings, state directory from
 * `PORTLEASE_STATE_DIR`, else `<tmp>/portlease-<uid>`. Created on first use.
 */
export function getDefaultAllocator(): PortAllocator {
  const allocators = defaultAllocators();
  allocators.fromEnvironment ??= new PortAllocator();
  return allocators.fromEnvironment;
}

/** The allocator for `stateDir` (the default one when undefined), shared by every module-level call. */
export function allocatorFor(stateDir: string | undefined): PortAllocator {
  if (stateDir === undefined) return getDefaultAllocator();
  // An invalid value gets the allocator's own TypeError.
  if (typeof stateDir !== 'string' || stateDir === '') return new PortAllocator({ stateDir });
  const key = resolve(stateDir);
  const allocatorsByDir = defaultAllocators().byDir;
  let allocator = allocatorsByDir.get(key);
  if (allocator === undefined) {
    allocator = new PortAllocator({ stateDir });
    allocatorsByDir.set(key, allocator);
  }
  return allocator;
}

/** Options of the module-level functions: a claim's options plus where the state lives. */
export type ClaimPortsOptions = ClaimOptions & {
  /** State directory for this call; default as in {@link getDefaultAllocator}. */
  stateDir?: string | undefined;
};

// Module state on purpose, unlike the allocators above: a bare `release()` gives back the
// claims made through this copy of the module only. A test runner that loads a fresh module
// graph per test file (jest) then keeps one file's bare release() away from the ports another
// file, or another worker thread, of the same process still holds.
const claimedHere = new Set<Lease>();

/** Claims through `allocator` and remembers the lease for a bare {@link release} while it is held. */
async function claimTracked(allocator: PortAllocator, options: ClaimOptions): Promise<Lease> {
  const lease = await allocator.claim(options);
  if (allocator !== getDefaultAllocator()) return lease;
  claimedHere.add(lease);
  const release = (): Promise<void> => {
    claimedHere.delete(lease);
    return lease.release();
  };
  return { ...lease, release, [Symbol.asyncDispose]: release };
}

function splitOptions(options: ClaimPortsOptions): [string | undefined, ClaimOptions] {
  if (typeof options !== 'object' || options === null) return [undefined, options];
  const { stateDir, ...claimOptions } = options;
  return [stateDir, claimOptions];
}

/**
 * Finds `count` consecutive free ports at or above `base` that can be bound on `host`,
 * and claims them for this process until {@link release} or exit, so that no other process
 * using portlease receives them.
 *
 * @returns the ports, ascending.
 * @throws {RangeError} when `count < 1`, not an integer, or the run would pass 65535.
 * @throws {PortsExhaustedError} (`PORTLEASE_EXHAUSTED`) when no such run exists up to 65535.
 * @example
 * ```ts
 * const [api, db] = await findSequentialPorts({ base: 8100, count: 2, host: '127.0.0.1' });
 * const ports = await findSequentialPorts(8100, 3); // positional form of the same
 * ```
 */
export function findSequentialPorts(options?: Omit<ClaimPortsOptions, 'pid' | 'ttlMs'>): Promise<number[]>;
export function findSequentialPorts(base?: number, count?: number, host?: string): Promise<number[]>;
export async function findSequentialPorts(
  baseOrOptions?: number | Omit<ClaimPortsOptions, 'pid' | 'ttlMs'>,
  count?: number,
  host?: string,
): Promise<number[]> {
  const options = typeof baseOrOptions === 'number' ? { base: baseOrOptions, count, host } : (baseOrOptions ?? {});
  const [stateDir, claimOptions] = splitOptions(options);
  const lease = await claimTracked(allocatorFor(stateDir), claimOptions);
  return [...lease.ports];
}

/**
 * Claims consecutive free ports and returns a {@link Lease} that releases them on
 * `release()` or at the end of an `await using` scope.
 *
 * @throws see {@link PortAllocator.claim}.
 * @example
 * ```ts
 * await using lease = await claimPorts({ count: 3, label: 'e2e' });
 * console.log(lease.ports); // e.g. [8090, 8091, 8092]
 * ```
 */
export async function claimPorts(options: ClaimPortsOptions = {}): Promise<Lease> {
  const [stateDir, claimOptions] = splitOptions(options);
  return claimTracked(allocatorFor(stateDir), claimOptions);
}

/**
 * Gives back ports in the default state directory. With no argument: the claims made
 * through {@link claimPorts} and {@link findSequentialPorts} of this module (this test file,
 * in a runner that gives each file its own modules) in this thread and still held, never those of another
 * test file, worker thread or copy of portlease, although they share this process's PID.
 * With ports: those ports, from whichever claims of this process hold them. Releasing what
 * is not held is a no-op. Resolves to the ports released.
 */
export async function release(ports?: number | readonly number[]): Promise<number[]> {
  if (ports !== undefined) return getDefaultAllocator().release(ports);
  const leases = [...claimedHere];
  claimedHere.clear();
  return getDefaultAllocator().releaseLeases(leases);
}

/** The live claims (or all, with `includeDead`) in the default or given state directory. */
export function listClaims(options: ListOptions & { stateDir?: string | undefined } = {}): Promise<ClaimInfo[]> {
  const { stateDir, ...listOptions } = options;
  return allocatorFor(stateDir).list(listOptions);
}

/** Drops dead and expired claims now, in the default or given state directory. Resolves to how many. */
export function reapClaims(options: { stateDir?: string | undefined } = {}): Promise<number> {
  return allocatorFor(options.stateDir).reap();
}
