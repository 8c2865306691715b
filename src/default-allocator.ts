import { resolve } from 'node:path';
import { type ClaimInfo, type Lease, type ListOptions, PortAllocator } from './allocator.js';
import type { ClaimOptions } from './options.js';

let defaultAllocator: PortAllocator | undefined;

/**
 * The allocator behind the module-level functions: default settings, state directory from
 * `PORTLEASE_STATE_DIR`, else `<tmp>/portlease-<uid>`. Created on first use.
 */
export function getDefaultAllocator(): PortAllocator {
  defaultAllocator ??= new PortAllocator();
  return defaultAllocator;
}

// One allocator per state directory: each keeps a copy of the state and a lock queue, which
// only help if calls for the same directory share them.
const allocatorsByDir = new Map<string, PortAllocator>();

function allocatorFor(stateDir: string | undefined): PortAllocator {
  if (stateDir === undefined) return getDefaultAllocator();
  // An invalid value gets the allocator's own TypeError.
  if (typeof stateDir !== 'string' || stateDir === '') return new PortAllocator({ stateDir });
  const key = resolve(stateDir);
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
  return allocatorFor(stateDir).findSequentialPorts(claimOptions);
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
  return allocatorFor(stateDir).claim(claimOptions);
}

/**
 * Gives back ports claimed by this process in the default state directory: the given
 * ones, or all when called with nothing. Releasing what this process does not hold is a
 * no-op. Resolves to the ports released.
 */
export function release(ports?: number | readonly number[]): Promise<number[]> {
  return getDefaultAllocator().release(ports);
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
