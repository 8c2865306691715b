import { claimedPorts, isClaimLive, memoizeOwnerCheck, type OwnerCheck, toPortSet } from '../claims/search.js';
import { OwnerNotAliveError } from '../base/errors.js';
import { OwnerLiveness } from '../liveness/owner-liveness.js';
import {
  type ClaimElsewhere,
  type ClaimInfo,
  type Lease,
  type ListOptions,
  type ReleaseFilter,
  type StickyPorts,
  toClaimInfo,
  toStickyPorts,
} from '../claims/lease.js';
import { currentStartTime, readStartTime } from '../liveness/liveness.js';
import { ClaimTokens, claimsElsewhere, TokensElsewhere, warnNoTokens } from '../claims/claim-tokens.js';
import { shareChange } from '../claims/share.js';
import { ownerFields, recordNewClaim, warmUpSearch } from '../claims/new-claim.js';
import { dropWhere, OwnClaims, releasePorts } from '../claims/own-claims.js';
import {
  type AllocatorOptions,
  type ClaimOptions,
  type ResolvedAllocatorOptions,
  resolveAllocatorOptions,
  resolveClaimOptions,
} from '../options/options.js';
import { sweepDeadBeacons } from '../liveness/beacon-probe.js';
import { findBusyPorts } from '../ports/probe.js';
import { SkipRuleSetCache, watchedOpens, SkippedPorts } from '../ports/skipped-ports.js';
import { SocketTable } from '../ports/socket-table.js';
import { readStickyMemory } from '../store/sticky-memory.js';
import type { ClaimRecord } from '../store/format.js';
import type { PortTokens } from '../ports/port-tokens.js';
import { STATE_DIR_MODE, STATE_FILE_MODE, statePaths, type StatePaths } from '../store/state-dir.js';
import { StateTransactions } from '../store/transaction.js';
import { ClaimQueue } from '../queue/queue-dir.js';
import { QueueServer } from '../queue/holder.js';
import { type QueueingContext, recordFirstClaim } from '../queue/requester.js';

export type { ClaimElsewhere, ClaimInfo, Lease, ListOptions, ReleaseFilter, StickyPorts } from '../claims/lease.js';
export type { ListeningSockets } from '../ports/listen.js';

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
  private readonly skipRuleSets: SkipRuleSetCache;
  private readonly owners: OwnerLiveness;
  /** The claims this instance made for this process: what a bare {@link release} gives back. */
  private readonly own: OwnClaims;
  /** The port tokens of claims: what keeps other users' claims off their ports. */
  private readonly tokens: ClaimTokens;
  private readonly queueing: QueueingContext;

  /** @throws {TypeError | RangeError} when an option is invalid. */
  constructor(options: AllocatorOptions = {}) {
    this.options = Object.freeze(resolveAllocatorOptions(options));
    this.paths = statePaths(this.options.stateDir);
    this.transactions = new StateTransactions(this.paths, { timeoutMs: this.options.lockTimeoutMs, staleMs: this.options.staleMs });
    this.socketTable = this.options.socketTable
      ? new SocketTable({ cacheFile: this.paths.socketCacheFile, cacheFileMode: STATE_FILE_MODE })
      : undefined;
    this.skipRuleSets = new SkipRuleSetCache(this.options.ephemeralPortRange);
    this.owners = new OwnerLiveness(this.paths.dir);
    this.tokens = new ClaimTokens(this.paths);
    this.own = new OwnClaims(this.transactions, this.tokens, this.paths.stateFile);
    const queue = new ClaimQueue(this.paths.queueDir, { file: STATE_FILE_MODE, dir: STATE_DIR_MODE });
    const ownerCheck = (): OwnerCheck => this.ownerCheck();
    this.transactions.serveQueue(new QueueServer(queue, { socketTable: this.socketTable, ownerCheck }));
    this.queueing = { transactions: this.transactions, queue, ownerCheck, settings: this.options };
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
   * @throws {PortsExhaustedError} (`PORTLEASE_EXHAUSTED`) when no run fits between `base` and `max` (default 65535).
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
    const releasedAtExit = this.own.exitSet(request);
    // Everything that can be done before taking the lock is, so the lock is held briefly even
    // by a fresh process whose code is still cold.
    const owner = ownerFields(this.paths.dir, request.pid, ownerStartTime);
    const opens = watchedOpens(request, this.options.ephemeralPortRange);
    const skipped = new SkippedPorts(this.skipRuleSets.for(request), request.protocol === 'udp' ? undefined : this.socketTable, opens);
    // A fresh process reads the state and runs the search code once before it contends: cold
    // code is several times slower, and a holder slow on the CPU keeps everyone waiting.
    const prefetched = this.transactions.prefetch();
    if (prefetched !== undefined) warmUpSearch(prefetched.claims);
    await this.owners.refresh(prefetched?.claims);
    const busy = new Set<number>();
    const elsewhere = new TokensElsewhere();
    const sticky = request.sticky ? { file: this.paths.stickyFile, mode: STATE_FILE_MODE } : undefined;
    const search = { request, owner, busy, elsewhere, skipped, sticky };
    let tentative: ClaimRecord | undefined;
    let swept = false;
    // Each round either succeeds or marks at least one more port busy, so it ends.
    for (;;) {
      const previous = tentative;
      try {
        tentative =
          previous === undefined && sticky === undefined
            ? await recordFirstClaim(this.queueing, search, releasedAtExit)
            : await this.transactions.run((state) => {
                skipped.refreshInsideLock();
                return recordNewClaim(state, { ...search, isAlive: this.ownerCheck() }, previous);
              });
      } catch (error) {
        if (previous !== undefined) await this.own.dropQuietly(previous.id);
        throw error;
      }
      // In the exit set from the moment it is recorded: a thread that ends while the claim is
      // probed (its process lives on, so the PID never dies) still gives it back.
      if (previous !== undefined) releasedAtExit?.delete(previous.id);
      releasedAtExit?.add(tentative.id);
      // Its tokens, then a probe, after the claim is recorded and the lock released: no
      // cooperating process of this state directory picks these ports meanwhile, and the lock
      // is never held across a socket round trip.
      let tokens: PortTokens | undefined;
      try {
        let taken = this.tokens.take(tentative);
        if (taken instanceof Promise) taken = await taken;
        // A keeper of this directory may still hold the tokens of a claim whose owner just died.
        if (taken.kind === 'taken' && !swept) {
          swept = true;
          if ((await this.tokens.sweep()) > 0) taken = await this.tokens.take(tentative);
        }
        if (taken.kind === 'taken') {
          // Claimed by another user, or through another state directory: search on without them.
          elsewhere.add(taken.ports);
          continue;
        }
        if (taken.kind === 'held') tokens = taken.tokens;
        else warnNoTokens(taken.reason);
        const busyPorts = await findBusyPorts(claimedPorts(tentative), request.host, request.protocol);
        if (busyPorts.length === 0) {
          const keeping = tokens === undefined ? undefined : this.tokens.keep(tentative, tokens);
          if (keeping !== undefined) await keeping;
          return this.own.handOut(tentative, releasedAtExit);
        }
        tokens?.close();
        for (const port of busyPorts) busy.add(port);
      } catch (error) {
        tokens?.close();
        await this.own.dropQuietly(tentative.id);
        throw error;
      }
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
   * Gives back ports. With no argument: every claim this allocator instance made for this
   * process and still holds, and nothing else: not the claims of another instance or another
   * worker thread, although they share this process's PID (a test runner's other files and
   * threads). The default allocator behind the module-level functions is one instance per
   * directory and thread, shared by every copy of portlease loaded there. With ports: those ports, from whichever claims
   * of this process hold them, so a run can be given back in part. Ports not held are
   * ignored (never an error, never another process's claim). Resolves to the ports released.
   *
   * A {@link Lease} (`lease.release()`, `await using`) remains the clearest way to give back
   * exactly one claim.
   */
  release(ports?: number | readonly number[]): Promise<number[]> {
    if (ports === undefined) return this.own.releaseAll();
    return this.releaseWhere({ ports, pid: process.pid });
  }

  /**
   * Gives back several leases this allocator handed out in one change of the state file;
   * leases of other allocators, or already released, are skipped. Resolves to the ports released.
   */
  releaseLeases(leases: Iterable<Lease>): Promise<number[]> {
    return this.own.releaseLeases(leases);
  }

  /** Gives back the claims that match `filter` (for tools acting on behalf of others, like the CLI). */
  async releaseWhere(filter: ReleaseFilter): Promise<number[]> {
    const ports = toPortSet(filter.ports);
    const pids = filter.pid === undefined ? undefined : new Set([filter.pid].flat());
    // A PID names a process of this PID namespace: PID 1 here is not another container's PID 1.
    const matchesPid = (claim: ClaimRecord): boolean => pids === undefined || (pids.has(claim.pid) && !OwnerLiveness.isForeign(claim));
    const matches = (claim: ClaimRecord): boolean => matchesPid(claim) && (filter.label === undefined || claim.label === filter.label);
    const { released, removed } = await this.transactions.run((state) => releasePorts(state, matches, ports));
    const stopping = this.tokens.letGo(removed);
    if (stopping !== undefined) await stopping;
    return released;
  }

  /**
   * Makes the live process `to` (default: this one) a second owner of the claims of `from`
   * that hold any of `ports`: each gets a copy owned by `to`, so the ports stay claimed while
   * either lives. For supervisors like `portlease exec`, whose command may exit while
   * processes it started still run. Where this process holds the port tokens of a claim it
   * shares (it claimed for itself), a keeper holds copies of them for `to`, so other users
   * stay off the ports while either owner lives. Resolves to how many claims were shared.
   * @throws {OwnerNotAliveError} (`PORTLEASE_OWNER_NOT_ALIVE`) when `to` is not running.
   */
  async share(ports: number | readonly number[], from: number, to: number = process.pid): Promise<number> {
    const copies = await this.transactions.run(shareChange(this.paths.dir, ports, from, to));
    await this.tokens.extend(copies);
    return copies.size;
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
   * The claims held elsewhere in this network namespace, by other users or through other state
   * directories, sorted by first port: the ports their tokens hold that no claim of this state
   * file holds. Linux only (elsewhere: none). Reads `/proc/net/unix`; touches no socket.
   */
  listElsewhere(): ClaimElsewhere[] {
    return claimsElsewhere(this.transactions.read().claims);
  }

  /**
   * The ports each label of a sticky claim held last, most recently used first (at most
   * 100 labels). Reads without taking the lock: the file is replaced whole.
   */
  listSticky(): StickyPorts[] {
    return readStickyMemory(this.paths.stickyFile).map(toStickyPorts);
  }

  /**
   * Drops every claim whose owner is gone or whose TTL has passed, and removes the beacon
   * files of owners that were killed. Resolves to how many claims were dropped.
   */
  async reap(): Promise<number> {
    await this.owners.refresh(this.transactions.read().claims, { fresh: true });
    await sweepDeadBeacons(this.paths.dir);
    await this.tokens.sweep();
    return this.transactions.run((state) => {
      const now = Date.now();
      const isAlive = this.ownerCheck();
      return dropWhere(state, (claim) => !isClaimLive(claim, now, isAlive));
    });
  }

  /** The owner check for one critical section (or one listing). */
  private ownerCheck(): OwnerCheck {
    return memoizeOwnerCheck((claim, ageMs) => this.owners.isAlive(claim, ageMs));
  }
}
