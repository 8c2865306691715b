import { claimedPorts, findFreeRun, isClaimLive, memoizeOwnerCheck, type OwnerCheck, removePorts } from './claims.js';
import { OwnerNotAliveError, PortsExhaustedError } from './errors.js';
import { type ClaimInfo, type Lease, type ListOptions, type ReleaseFilter, toClaimInfo, toLease } from './lease.js';
import { OwnerLiveness } from './foreign-owners.js';
import { currentPidNamespace, currentStartTime, readStartTime, type StartTime } from './liveness.js';
import { ensureOwnBeacon, sweepDeadBeacons } from './owner-beacon.js';
import {
  type AllocatorOptions,
  type ClaimOptions,
  type ResolvedAllocatorOptions,
  type ResolvedClaimOptions,
  resolveAllocatorOptions,
  resolveClaimOptions,
} from './options.js';
import { MAX_PORT } from './port-ranges.js';
import { findBusyPorts } from './probe.js';
import { claimsReleasedAtExit, newClaimId } from './process-state.js';
import { BlockedPortsCache, SkippedPorts } from './skipped-ports.js';
import { SocketTable } from './socket-table.js';
import { type ClaimRecord, freezeRecord, type StateData } from './state-format.js';
import { statePaths, type StatePaths } from './state-dir.js';
import { type ChangeOutcome, StateTransactions } from './transaction.js';

export type { ClaimInfo, Lease, ListOptions, ReleaseFilter } from './lease.js';

function toPortSet(ports: number | readonly number[] | undefined): Set<number> | undefined {
  if (ports === undefined) return undefined;
  const list = typeof ports === 'number' ? [ports] : ports;
  if (!Array.isArray(list)) throw new TypeError(`Expected \`ports\` to be a port number or an array of them, got ${String(ports)}.`);
  for (const port of list) {
    if (!Number.isInteger(port) || port < 1 || port > MAX_PORT) {
      throw new RangeError(`Expected \`ports\` to hold integers from 1 to 65535, got ${JSON.stringify(port)}.`);
    }
  }
  return new Set(list);
}

/** The fields of a claim that identify its owner beyond the PID. */
type OwnerFields = Pick<ClaimRecord, 'startTime' | 'pidNs' | 'beacon'>;

/** Whether a claim is one this thread gives back when it exits: its own process's, with no TTL. */
function isReleasedAtExit(request: ResolvedClaimOptions): boolean {
  return request.pid === process.pid && request.ttlMs === undefined;
}

/**
 * Hands out free TCP ports to many processes on one host without races. Claims are
 * recorded in a state file under a cross-process lock, so no two cooperating processes
 * ever receive the same port, and each port is probed by really binding it.
 *
 * @example
 * ```ts
 * const allocator = new PortAllocator({ stateDir: '/tmp/my-ci-ports' });
 * const lease = await allocator.claim({ count: 3, label: 'api' });
 * startServers(lease.ports);
 * await lease.release();
 * ```
 */
export class PortAllocator {
  /** The resolved settings of this allocator. */
  readonly options: Readonly<ResolvedAllocatorOptions>;
  private readonly paths: StatePaths;
  private readonly transactions: StateTransactions;
  private readonly socketTable: SocketTable | undefined;
  private readonly blockedPorts: BlockedPortsCache;
  private readonly owners: OwnerLiveness;

  /** @throws {TypeError | RangeError} when an option is invalid. */
  constructor(options: AllocatorOptions = {}) {
    this.options = Object.freeze(resolveAllocatorOptions(options));
    this.paths = statePaths(this.options.stateDir);
    this.transactions = new StateTransactions(this.paths, {
      timeoutMs: this.options.lockTimeoutMs,
      staleMs: this.options.staleMs,
      shared: this.options.sharedStateDir,
    });
    this.socketTable = this.options.socketTable
      ? new SocketTable({ cacheFile: this.paths.socketCacheFile, cacheFileMode: this.options.sharedStateDir ? 0o660 : 0o600 })
      : undefined;
    this.blockedPorts = new BlockedPortsCache(this.options.ephemeralPortRange);
    this.owners = new OwnerLiveness(this.paths.dir);
  }

  /** Absolute path of this host's state file. */
  get stateFile(): string {
    return this.paths.stateFile;
  }

  /**
   * Claims `count` consecutive ports: the lowest run at or above `base` that no live claim
   * holds and that can be bound on `host` now. The claim lasts until released, or until its
   * owner (`pid`, default this process) exits, or its `ttlMs` passes.
   *
   * @throws {TypeError | RangeError} on invalid options, before touching any file.
   * @throws {PortsExhaustedError} (`PORTLEASE_EXHAUSTED`) when no run fits below 65536.
   * @throws {LockTimeoutError} (`PORTLEASE_LOCK_TIMEOUT`) when the lock stays held too long.
   * @throws {OwnerNotAliveError} (`PORTLEASE_OWNER_NOT_ALIVE`) when `pid` is not running.
   * @throws {HostUnavailableError} (`PORTLEASE_HOST_UNAVAILABLE`) when `host` is not this machine's.
   * @throws {StateIoError} (`PORTLEASE_STATE_IO`) when the state file cannot be read or written.
   */
  async claim(options: ClaimOptions = {}): Promise<Lease> {
    const request = resolveClaimOptions(options);
    const ownerStartTime = request.pid === process.pid ? currentStartTime() : readStartTime(request.pid);
    if (ownerStartTime === null) throw new OwnerNotAliveError(request.pid);
    this.transactions.prepare();
    const releasedAtExit = isReleasedAtExit(request)
      ? claimsReleasedAtExit(this.paths.stateFile, (ids) => this.releaseAtExit(ids))
      : undefined;
    // Everything that can be done before taking the lock is, so the lock is held briefly even
    // by a fresh process whose code is still cold.
    const owner = this.ownerFields(request.pid, ownerStartTime);
    const skipped = new SkippedPorts(this.blockedPorts.for(request), request.protocol === 'udp' ? undefined : this.socketTable);
    await this.owners.refresh(await this.warmUp());
    const busy = new Set<number>();
    let tentative: ClaimRecord | undefined;
    // Each round either succeeds or marks at least one more port busy, so it ends.
    for (;;) {
      const previous = tentative;
      try {
        tentative = await this.transactions.run((state) => {
          skipped.refreshInsideLock();
          return this.recordClaim(state, request, owner, busy, previous, skipped);
        });
      } catch (error) {
        if (previous !== undefined) await this.dropClaimQuietly(previous.id);
        throw error;
      }
      // Probed after the claim is recorded and the lock released: no cooperating process
      // picks these ports meanwhile, and the lock is never held across a socket round trip.
      let busyPorts: number[];
      try {
        busyPorts = await findBusyPorts(claimedPorts(tentative), request.host, request.protocol);
      } catch (error) {
        await this.dropClaimQuietly(tentative.id);
        throw error;
      }
      if (busyPorts.length === 0) {
        releasedAtExit?.add(tentative.id);
        const id = tentative.id;
        return toLease(tentative, () => this.dropClaim(id, releasedAtExit));
      }
      for (const port of busyPorts) busy.add(port);
    }
  }

  /**
   * `count` consecutive free ports from `base` upwards, claimed for this process until
   * {@link release} or exit: the original `find_sequential_ports` contract.
   * @throws see {@link claim}.
   */
  async findSequentialPorts(options?: Omit<ClaimOptions, 'pid' | 'ttlMs'>): Promise<number[]> {
    const lease = await this.claim(options);
    return [...lease.ports];
  }

  /**
   * Gives back ports this process holds: the given ones, or all of them when called with
   * nothing. Ports not held by this process are ignored (never an error, never another
   * live process's claim). Resolves to the ports actually released.
   *
   * Beware: every thread of the process shares its PID, so a bare `release()` in one worker
   * thread (a test runner's threads pool) frees the claims of the others too; release a
   * {@link Lease} instead.
   */
  release(ports?: number | readonly number[]): Promise<number[]> {
    return this.releaseWhere({ ports, pid: process.pid });
  }

  /** Gives back the claims that match `filter` (for tools acting on behalf of others, like the CLI). */
  async releaseWhere(filter: ReleaseFilter): Promise<number[]> {
    const ports = toPortSet(filter.ports);
    const pids = filter.pid === undefined ? undefined : new Set([filter.pid].flat());
    // A PID names a process of this PID namespace: PID 1 here is not another container's PID 1.
    const matchesPid = (claim: ClaimRecord): boolean => pids === undefined || (pids.has(claim.pid) && !OwnerLiveness.isForeign(claim));
    const matches = (claim: ClaimRecord): boolean => matchesPid(claim) && (filter.label === undefined || claim.label === filter.label);
    return this.transactions.run((state) => {
      const { kept, released } = removePorts(state.claims, matches, ports);
      if (released.length > 0) state.claims = kept.map(freezeRecord);
      return { changed: released.length > 0, result: released };
    });
  }

  /**
   * The claims in the state file, sorted by first port. By default only live ones.
   * Reads without taking the lock: every change is one whole line, so a reader sees each
   * change entirely or not yet.
   */
  async list(options: ListOptions = {}): Promise<ClaimInfo[]> {
    const state = this.transactions.read();
    await this.owners.refresh(state.claims, { fresh: true });
    const now = Date.now();
    const currentBoot = this.transactions.isCurrentBoot(state);
    const isAlive = this.ownerCheck();
    const infos = state.claims.map((claim) => toClaimInfo(claim, currentBoot && isClaimLive(claim, now, isAlive)));
    return infos.filter((info) => info.live || options.includeDead === true).sort((a, b) => a.ports[0]! - b.ports[0]!);
  }

  /**
   * Drops every claim whose owner is gone or whose TTL has passed, and removes the beacon
   * files of owners that were killed. Resolves to how many claims were dropped.
   */
  async reap(): Promise<number> {
    await this.owners.refresh(this.transactions.read().claims, { fresh: true });
    await sweepDeadBeacons(this.paths.dir);
    return this.transactions.run((state) => {
      const now = Date.now();
      const isAlive = this.ownerCheck();
      const before = state.claims.length;
      state.claims = state.claims.filter((claim) => isClaimLive(claim, now, isAlive));
      return { changed: state.claims.length !== before, result: before - state.claims.length };
    });
  }

  private recordClaim(
    state: StateData,
    request: ResolvedClaimOptions,
    owner: OwnerFields,
    busy: ReadonlySet<number>,
    previous: ClaimRecord | undefined,
    skipped: SkippedPorts,
  ): ChangeOutcome<ClaimRecord> {
    if (previous !== undefined) state.claims = state.claims.filter((claim) => claim.id !== previous.id);
    const now = Date.now();
    const isAlive = this.ownerCheck();
    const { start, dead } = findFreeRun(
      state.claims,
      request.base,
      request.count,
      (port) => skipped.has(port) || busy.has(port),
      (claim) => isClaimLive(claim, now, isAlive),
    );
    if (dead.size > 0) state.claims = state.claims.filter((claim) => !dead.has(claim));
    if (start === undefined) {
      throw new PortsExhaustedError(request.base, request.count, {
        skipped: ['claimed ports', ...skipped.describe(request.base)],
        busy: busy.size,
        host: request.host,
      });
    }
    const claim = freezeRecord({
      id: newClaimId(),
      start,
      count: request.count,
      host: request.host,
      pid: request.pid,
      ...owner,
      createdAt: now,
      ...(request.ttlMs === undefined ? {} : { expiresAt: now + request.ttlMs }),
      ...(request.label === undefined ? {} : { label: request.label }),
    });
    state.claims.push(claim);
    return { changed: true, result: claim };
  }

  /** What identifies the owner beyond its PID: start time, PID namespace, and its beacon if it is this process. */
  private ownerFields(pid: number, startTime: StartTime): OwnerFields {
    const pidNs = currentPidNamespace();
    // Only this process can hold a beacon for itself; a claim for another PID has none.
    const beacon = pid === process.pid && pidNs !== undefined ? ensureOwnBeacon(this.paths.dir, this.options.sharedStateDir) : undefined;
    return {
      ...(startTime === undefined ? {} : { startTime }),
      ...(pidNs === undefined ? {} : { pidNs }),
      ...(beacon === undefined ? {} : { beacon }),
    };
  }

  /** The owner check for one critical section (or one listing). */
  private ownerCheck(): OwnerCheck {
    return memoizeOwnerCheck((claim, ageMs) => this.owners.isAlive(claim, ageMs));
  }

  /**
   * A fresh process reads the state and runs the lock and search code once before it
   * contends: cold code is several times slower, and with many processes on few cores a
   * holder slow on the CPU keeps everyone waiting. Returns the claims read, if it read.
   */
  private async warmUp(): Promise<readonly ClaimRecord[] | undefined> {
    const state = await this.transactions.prefetch();
    if (state !== undefined)
      findFreeRun(
        state.claims,
        1,
        1,
        () => false,
        () => true,
      );
    return state?.claims;
  }

  private async dropClaim(id: string, releasedAtExit: Set<string> | undefined): Promise<void> {
    // Forgotten by the exit handler too, so a long-running process does not pile up ids.
    releasedAtExit?.delete(id);
    await this.transactions.run((state) => {
      const before = state.claims.length;
      state.claims = state.claims.filter((claim) => claim.id !== id);
      return { changed: state.claims.length !== before, result: undefined };
    });
  }

  /** Drops a tentative claim after a failure; a failure here must not hide the first one. */
  private async dropClaimQuietly(id: string): Promise<void> {
    try {
      await this.dropClaim(id, undefined);
    } catch {
      // The claim stays until its owner exits and it is reaped.
    }
  }

  /**
   * At exit (of the process, or of this worker thread), gives back the claims this thread
   * made for itself if the lock is free right now; otherwise they are reaped once this PID
   * is gone.
   */
  private releaseAtExit(ids: ReadonlySet<string>): void {
    this.transactions.runNowIfFree((state) => {
      const before = state.claims.length;
      state.claims = state.claims.filter((claim) => !(claim.pid === process.pid && ids.has(claim.id)));
      return { changed: state.claims.length !== before, result: undefined };
    });
  }
}
