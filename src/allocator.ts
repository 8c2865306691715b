import { threadId } from 'node:worker_threads';
import { claimPorts, findFreeRun, isClaimLive, memoizeOwnerCheck, removePorts } from './claims.js';
import { OwnerNotAliveError, PortsExhaustedError, StateIoError } from './errors.js';
import { currentBootId, currentStartTime, isOwnerAlive, readStartTime, type StartTime } from './liveness.js';
import { type HeldLock, StateLock } from './lock.js';
import {
  type AllocatorOptions,
  type ClaimOptions,
  type ResolvedAllocatorOptions,
  type ResolvedClaimOptions,
  resolveAllocatorOptions,
  resolveClaimOptions,
} from './options.js';
import { BlockedPorts, systemEphemeralRange } from './port-ranges.js';
import { findBusyPorts } from './probe.js';
import { SocketTable } from './socket-table.js';
import { type ClaimRecord, ownerFields, type StateData, StateStore } from './state.js';
import { prepareStateDir, statePaths, type StatePaths } from './state-dir.js';

/** Ports held for their owner until released, or until the owner exits. */
export interface Lease extends AsyncDisposable {
  /** The claimed ports, consecutive and ascending. */
  readonly ports: readonly number[];
  /** The first claimed port (`ports[0]`). */
  readonly port: number;
  /** The host the ports were probed on. */
  readonly host: string;
  /** PID of the process the claim belongs to. */
  readonly pid: number;
  /** The label given to the claim, if any. */
  readonly label: string | undefined;
  /** Gives the ports back. Safe to call more than once. */
  release(): Promise<void>;
}

/** A claim as reported by {@link PortAllocator.list}. */
export interface ClaimInfo {
  /** Unique id of the claim. */
  id: string;
  /** The claimed ports, consecutive and ascending. */
  ports: number[];
  /** The host the ports were probed on. */
  host: string;
  /** PID of the owner. */
  pid: number;
  /** The claim's label, if any. */
  label: string | undefined;
  /** When the claim was made. */
  createdAt: Date;
  /** When the claim expires whatever its owner does, if it was made with a TTL. */
  expiresAt: Date | undefined;
  /** Whether the claim still holds its ports (owner alive, or TTL not reached). */
  live: boolean;
}

/** Which claims {@link PortAllocator.releaseWhere} gives back; omitted fields match anything. */
export interface ReleaseFilter {
  /** Only these ports. */
  ports?: number | readonly number[] | undefined;
  /** Only claims owned by this PID. */
  pid?: number | undefined;
  /** Only claims with this label. */
  label?: string | undefined;
}

/** Options of {@link PortAllocator.list}. */
export interface ListOptions {
  /** Also report claims that no longer hold their ports (owner dead, TTL passed). */
  includeDead?: boolean | undefined;
}

// A lock broken while held (the holder stalled past staleMs) makes the write unsafe; redo it.
const MAX_TRANSACTION_ATTEMPTS = 3;

class LockLostError extends Error {}

function isMissingStateDir(error: unknown): boolean {
  return error instanceof StateIoError && (error.cause as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}

let claimCounter = 0;
/**
 * A claim id unique on this host: the PID is unique among live processes, the thread id
 * among its threads, and the time and counter among one thread's claims. (node:crypto's randomUUID would add ~5 ms to a cold start.)
 */
function newClaimId(): string {
  claimCounter = (claimCounter + 1) % Number.MAX_SAFE_INTEGER;
  // Worker threads share the PID and each has its own counter: the thread id keeps them apart.
  return `${process.pid.toString(36)}.${threadId.toString(36)}-${Date.now().toString(36)}-${claimCounter.toString(36)}`;
}

/** Ports a search passes over before any probe; see `skipFor`. */
interface SkipSet {
  rules: BlockedPorts;
  /**
   * One byte per port, 1 where a local TCP socket uses it; `undefined` without a socket
   * table; `null` until the kernel's table has been read (under the lock).
   */
  inUse: Uint8Array | undefined | null;
}

function describeSkipped(skip: SkipSet, base: number): string[] {
  const parts = skip.rules.describe(base);
  if (skip.inUse !== undefined && skip.inUse !== null) {
    let count = 0;
    for (let port = base; port <= 65535; port++) count += skip.inUse[port]!;
    if (count > 0) parts.push(`${count} port${count === 1 ? '' : 's'} used by local TCP sockets`);
  }
  return parts;
}

const exitReleasers = new Map<string, () => void>();
let exitHookInstalled = false;
/**
 * Ids of the claims this thread made for its own process, per state file: what the exit
 * handler gives back. Worker threads share the PID, so releasing "the process's claims" when
 * one of them ends would free ports the main thread or other workers still use.
 */
const ownClaimIds = new Map<string, Set<string>>();

function releaseOwnClaimsOnExit(): void {
  for (const releaseOwn of exitReleasers.values()) releaseOwn();
}

function toPortSet(ports: number | readonly number[] | undefined): Set<number> | undefined {
  if (ports === undefined) return undefined;
  const list = typeof ports === 'number' ? [ports] : ports;
  if (!Array.isArray(list)) throw new TypeError(`Expected \`ports\` to be a port number or an array of them, got ${String(ports)}.`);
  for (const port of list) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) {
      throw new RangeError(`Expected \`ports\` to hold integers from 1 to 65535, got ${JSON.stringify(port)}.`);
    }
  }
  return new Set(list);
}

/**
 * Hands out free TCP ports to many processes on one host without races. Claims are
 * recorded in a state file under a cross-process lock, so no two cooperating processes
 * ever receive the same port, and each port is probed by really binding it.
 *
 * @example
 * ```ts
 * const allocator = new PortAllocator({ stateDir: '/tmp/my-ci-ports' });
 * await using lease = await allocator.claim({ count: 3, label: 'api' });
 * startServers(lease.ports);
 * ```
 */
export class PortAllocator {
  /** The resolved settings of this allocator. */
  readonly options: Readonly<ResolvedAllocatorOptions>;
  private readonly paths: StatePaths;
  private readonly lock: StateLock;
  private readonly store: StateStore;
  private readonly socketTable: SocketTable;
  private lastRules: { key: string; rules: BlockedPorts } | undefined;
  private prepared = false;

  /** @throws {TypeError | RangeError} when an option is invalid. */
  constructor(options: AllocatorOptions = {}) {
    this.options = Object.freeze(resolveAllocatorOptions(options));
    this.paths = statePaths(this.options.stateDir);
    this.lock = new StateLock(this.paths.stateFile, { timeoutMs: this.options.lockTimeoutMs, staleMs: this.options.staleMs });
    this.store = new StateStore(this.paths.stateFile, this.options.sharedStateDir);
    this.socketTable = new SocketTable({
      cacheFile: this.paths.socketCacheFile,
      cacheFileMode: this.options.sharedStateDir ? 0o660 : 0o600,
    });
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
   */
  async claim(options: ClaimOptions = {}): Promise<Lease> {
    const request = resolveClaimOptions(options);
    const ownerStartTime = request.pid === process.pid ? currentStartTime() : readStartTime(request.pid);
    if (ownerStartTime === null) throw new OwnerNotAliveError(request.pid);
    this.prepare();
    if (request.pid === process.pid && request.ttlMs === undefined) this.installExitRelease();
    // Everything that can be done before taking the lock is, so the lock is held briefly even
    // by a fresh process whose code is still cold: the skip rules, the socket table if a copy
    // is current, and a read of the state without the lock, which leaves the locked read only
    // the lines appended since.
    const skip = this.skipFor(request);
    this.prefetchState();
    const busy = new Set<number>();
    let tentative: ClaimRecord | undefined;
    // Each round either succeeds or marks at least one more port busy, so it ends.
    for (;;) {
      const previous = tentative;
      try {
        tentative = await this.transaction((state) => {
          // Only a socket table that must be read from the kernel is read under the lock: when
          // many processes start at once, the first reads it and the rest find its copy.
          if (skip.inUse === null) skip.inUse = this.socketTable.portsInUse();
          return this.recordClaim(state, request, ownerStartTime, busy, previous, skip);
        });
      } catch (error) {
        if (previous !== undefined && tentative === previous) await this.dropClaimQuietly(previous.id);
        throw error;
      }
      // Probed after the claim is recorded and the lock released: no cooperating process
      // picks these ports meanwhile, and the lock is never held across a socket round trip.
      let busyPorts: number[];
      try {
        busyPorts = await findBusyPorts(claimPorts(tentative), request.host, request.protocol);
      } catch (error) {
        await this.dropClaimQuietly(tentative.id);
        throw error;
      }
      if (busyPorts.length === 0) {
        if (request.pid === process.pid && request.ttlMs === undefined) ownClaimIds.get(this.paths.stateFile)?.add(tentative.id);
        return this.toLease(tentative);
      }
      for (const port of busyPorts) busy.add(port);
    }
  }

  /**
   * The seed's contract: `count` consecutive free ports from `base` upwards, claimed for this
   * process until {@link release} or exit.
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
   */
  release(ports?: number | readonly number[]): Promise<number[]> {
    return this.releaseWhere({ ports, pid: process.pid });
  }

  /** Gives back the claims that match `filter` (for tools acting on behalf of others, like the CLI). */
  async releaseWhere(filter: ReleaseFilter): Promise<number[]> {
    const ports = toPortSet(filter.ports);
    const matches = (claim: ClaimRecord): boolean =>
      (filter.pid === undefined || claim.pid === filter.pid) && (filter.label === undefined || claim.label === filter.label);
    this.prepare();
    return this.transaction((state) => {
      const { kept, released } = removePorts(state.claims, matches, ports);
      if (released.length > 0) state.claims = kept;
      return { changed: released.length > 0, result: released };
    });
  }

  /**
   * The claims in the state file, sorted by first port. By default only live ones.
   * Reads without taking the lock: every change is one whole line, so a reader sees each
   * change entirely or not yet.
   */
  async list(options: ListOptions = {}): Promise<ClaimInfo[]> {
    this.prepare();
    // Without the lock: a corrupt file reads as empty here and is repaired by the next writer.
    const state = this.store.load(false);
    const now = Date.now();
    const sameBoot = this.isSameBoot(state);
    const isAlive = memoizeOwnerCheck(isOwnerAlive);
    const infos = state.claims.map((claim) => this.toInfo(claim, sameBoot && isClaimLive(claim, now, isAlive)));
    return infos.filter((info) => info.live || options.includeDead === true).sort((a, b) => a.ports[0]! - b.ports[0]!);
  }

  /** Drops every claim whose owner is gone or whose TTL has passed. Resolves to how many were dropped. */
  async reap(): Promise<number> {
    this.prepare();
    return this.transaction((state) => {
      const now = Date.now();
      const isAlive = memoizeOwnerCheck(isOwnerAlive);
      const before = state.claims.length;
      state.claims = state.claims.filter((claim) => isClaimLive(claim, now, isAlive));
      return { changed: state.claims.length !== before, result: before - state.claims.length };
    });
  }

  private recordClaim(
    state: StateData,
    request: ResolvedClaimOptions,
    ownerStartTime: StartTime,
    busy: ReadonlySet<number>,
    previous: ClaimRecord | undefined,
    skip: SkipSet,
  ): { changed: boolean; result: ClaimRecord } {
    if (previous !== undefined) state.claims = state.claims.filter((claim) => claim.id !== previous.id);
    const now = Date.now();
    const isAlive = memoizeOwnerCheck(isOwnerAlive);
    const { start, dead } = findFreeRun(
      state.claims,
      request.base,
      request.count,
      (port) => skip.rules.has(port) || skip.inUse?.[port] === 1 || busy.has(port),
      (claim) => isClaimLive(claim, now, isAlive),
    );
    if (dead.size > 0) state.claims = state.claims.filter((claim) => !dead.has(claim));
    if (start === undefined) {
      const skipped = ['claimed ports', ...describeSkipped(skip, request.base)].join(', ');
      const busyNote = busy.size > 0 ? `; ${busy.size} port${busy.size === 1 ? ' was' : 's were'} busy on ${request.host}` : '';
      throw new PortsExhaustedError(request.base, request.count, `, after skipping ${skipped}${busyNote}`);
    }
    const claim: ClaimRecord = {
      id: newClaimId(),
      start,
      count: request.count,
      host: request.host,
      pid: request.pid,
      ...ownerFields(ownerStartTime),
      createdAt: now,
      ...(request.ttlMs === undefined ? {} : { expiresAt: now + request.ttlMs }),
      ...(request.label === undefined ? {} : { label: request.label }),
    };
    state.claims.push(claim);
    return { changed: true, result: claim };
  }

  /** What a claim skips without probing: the rules of its options, and ports local sockets use. */
  private skipFor(request: ResolvedClaimOptions): SkipSet {
    const ephemeral = request.allowEphemeralPorts ? undefined : (this.options.ephemeralPortRange ?? systemEphemeralRange());
    const rulesKey = JSON.stringify([ephemeral, request.allowUnsafePorts, request.exclude]);
    // Building the 64 KiB bitmap showed up at 4 % of a hot claim; callers repeat their rules.
    if (this.lastRules?.key !== rulesKey) {
      this.lastRules = { key: rulesKey, rules: new BlockedPorts({ ephemeral, unsafe: !request.allowUnsafePorts, exclude: request.exclude }) };
    }
    // The TCP table says nothing about UDP, whose probe has no SO_REUSEADDR blind spot anyway.
    const inUse = this.options.socketTable && request.protocol !== 'udp' ? this.socketTable.cachedPortsInUse() : undefined;
    return { rules: this.lastRules.rules, inUse };
  }

  private prefetchState(): void {
    // Once this process holds a copy, the locked read only checks the file's size: nothing to gain.
    if (this.store.hasSnapshot) return;
    try {
      const state = this.store.load(false);
      // A fresh process runs the lock and search code for the first time, several times slower
      // than warm; with many processes on few cores a holder that is slow on the CPU keeps
      // everyone waiting. Run that code once on a private lock and the unlocked copy first.
      new StateLock(`${this.paths.stateFile}.warm-${process.pid}-${threadId}`, { timeoutMs: 0, staleMs: this.options.staleMs })
        .tryAcquireSync()
        ?.release();
      findFreeRun(state.claims, 1, 1, () => false, () => true);
    } catch {
      // The locked read reports it.
    }
  }



  /**
   * Runs `change` on the current state under the lock and writes the state back when it
   * changed (or when reading it dropped claims of an earlier boot). Synchronous inside.
   */
  private async transaction<T>(change: (state: StateData) => { changed: boolean; result: T }): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.lock.runExclusive((held) => this.applyChange(held, change));
      } catch (error) {
        if (attempt >= MAX_TRANSACTION_ATTEMPTS) throw error;
        if (isMissingStateDir(error)) {
          // A temp cleaner (systemd-tmpfiles, tmpreaper) removed the directory under a
          // long-running process: create it again rather than fail every claim from now on.
          this.prepared = false;
          this.prepare();
        } else if (!(error instanceof LockLostError)) {
          throw error;
        }
      }
    }
  }

  private applyChange<T>(held: HeldLock, change: (state: StateData) => { changed: boolean; result: T }): T {
    const state = this.store.load();
    const bootChanged = !this.isSameBoot(state);
    if (bootChanged) {
      // Every owner of an earlier boot is gone, and so are the servers its TTL claims were for.
      state.claims = [];
      const bootId = currentBootId();
      if (bootId === undefined) delete state.bootId;
      else state.bootId = bootId;
    }
    const { changed, result } = change(state);
    if (changed || bootChanged) {
      if (!held.isStillHeld()) throw new LockLostError('the lock was broken while held');
      this.store.commit(state);
    }
    return result;
  }

  private isSameBoot(state: StateData): boolean {
    const bootId = currentBootId();
    return bootId === undefined || state.bootId === bootId;
  }

  private async dropClaim(id: string): Promise<void> {
    // Forgotten by the exit handler too, so a long-running process does not pile up ids.
    ownClaimIds.get(this.paths.stateFile)?.delete(id);
    await this.transaction((state) => {
      const before = state.claims.length;
      state.claims = state.claims.filter((claim) => claim.id !== id);
      return { changed: state.claims.length !== before, result: undefined };
    });
  }

  /** Drops a tentative claim after a failure; a failure here must not hide the first one. */
  private async dropClaimQuietly(id: string): Promise<void> {
    try {
      await this.dropClaim(id);
    } catch {
      // The claim stays until its owner exits and it is reaped.
    }
  }

  private toLease(claim: ClaimRecord): Lease {
    const ports = Object.freeze(claimPorts(claim));
    let released: Promise<void> | undefined;
    const release = (): Promise<void> => {
      released ??= this.dropClaim(claim.id);
      return released;
    };
    return {
      ports,
      port: claim.start,
      host: claim.host,
      pid: claim.pid,
      label: claim.label,
      release,
      [Symbol.asyncDispose]: release,
    };
  }

  private toInfo(claim: ClaimRecord, live: boolean): ClaimInfo {
    return {
      id: claim.id,
      ports: claimPorts(claim),
      host: claim.host,
      pid: claim.pid,
      label: claim.label,
      createdAt: new Date(claim.createdAt),
      expiresAt: claim.expiresAt === undefined ? undefined : new Date(claim.expiresAt),
      live,
    };
  }

  private prepare(): void {
    if (this.prepared) return;
    prepareStateDir(this.paths.dir, this.options.sharedStateDir);
    this.prepared = true;
  }

  /**
   * On normal exit (of the process, or of this worker thread), give back the claims this
   * thread made for itself if the lock is free right now;
   * otherwise leave them: they are reaped once this PID is gone. Registered once per state
   * file, and only by processes that claimed something.
   */
  private installExitRelease(): void {
    const key = this.paths.stateFile;
    if (exitReleasers.has(key)) return;
    const ids = new Set<string>();
    ownClaimIds.set(key, ids);
    exitReleasers.set(key, () => {
      if (ids.size === 0) return;
      try {
        const held = this.lock.tryAcquireSync();
        if (held === undefined) return;
        try {
          this.applyChange(held, (state) => {
            const before = state.claims.length;
            state.claims = state.claims.filter((claim) => !(claim.pid === process.pid && ids.has(claim.id)));
            return { changed: state.claims.length !== before, result: undefined };
          });
        } finally {
          held.release();
        }
      } catch {
        // Exit must not fail because of us; reaping covers what was left.
      }
    });
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once('exit', releaseOwnClaimsOnExit);
    }
  }
}
