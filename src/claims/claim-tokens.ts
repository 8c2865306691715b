/**
 * The port tokens of claims (ports/port-tokens.ts): taken once a claim is recorded, before its
 * ports are probed; then held by this process when the claim is its own and ends with it, or
 * by a keeper (claims/keeper.ts) when it outlives this process; let go of when the claim leaves
 * the state file. Tokens are what keeps the claims of other users and other state directories
 * of the network namespace off these ports; the state file keeps this directory's.
 */
import { processCache, processSlot } from '../base/process-state.js';
import { userName } from '../base/users.js';
import { warnOnce } from '../base/warnings.js';
import type { ClaimElsewhere } from './lease.js';
import { STATE_FILE_MODE, type StatePaths } from '../store/state-dir.js';
import type { ClaimRecord } from '../store/format.js';
import { type DescribedClaim, type PortTokens, type TakenTokens, takeTokens, tokensInUse } from '../ports/port-tokens.js';
import type { HeldElsewhere } from './new-claim.js';
import { claimedPorts, type RemovedPorts } from './search.js';
import { startKeeper, stopKeeper, sweepKeepers } from './keeper.js';

/**
 * The tokens this thread holds itself, by claim id. Process state: two copies of portlease in
 * one process release each other's claims by id, and must find their tokens.
 */
function heldHere(): Map<string, PortTokens> {
  return processSlot('claim-tokens.v1', () => new Map<string, PortTokens>());
}

/** Whether the claim lives exactly as long as this process: its tokens can stay here. */
function endsWithThisProcess(claim: ClaimRecord): boolean {
  return claim.pid === process.pid && claim.expiresAt === undefined;
}

/** The port tokens of the claims made through one state directory. */
export class ClaimTokens {
  private readonly paths: StatePaths;

  constructor(paths: StatePaths) {
    this.paths = paths;
  }

  /** Takes the tokens of a claim just recorded: all of them, or none (see {@link takeTokens}). */
  take(claim: ClaimRecord): TakenTokens | Promise<TakenTokens> {
    const uid = processCache('uid', () => process.getuid?.() ?? 0);
    return takeTokens(claimedPorts(claim), { uid, start: claim.start, count: claim.count, pid: claim.pid, label: claim.label });
  }

  /**
   * Once the claim's ports passed their probe: keeps `tokens` here if the claim ends with this
   * process, else hands them to a keeper that holds them for the claim's owner or TTL (and
   * lets go of this process's copies).
   */
  keep(claim: ClaimRecord, tokens: PortTokens): Promise<void> | undefined {
    if (endsWithThisProcess(claim)) {
      heldHere().set(claim.id, tokens);
      return undefined;
    }
    return this.startKeeper(claim, tokens).finally(() => tokens.close());
  }

  /**
   * After claims were shared with other owners (`copies`, each made from the claim `from`):
   * where this process holds `from`'s tokens, a keeper holds copies of them for as long as the
   * copy's owner lives, so the ports stay claimed across users when this process is gone.
   */
  async extend(from: ReadonlyMap<string, ClaimRecord>): Promise<void> {
    for (const [sourceId, copy] of from) {
      const tokens = heldHere().get(sourceId);
      if (tokens === undefined || endsWithThisProcess(copy)) continue;
      await this.startKeeper(copy, tokens);
    }
  }

  /**
   * After claims left the state file: lets go of their tokens held here, and stops the keepers
   * of those that went whole. A keeper holds a claim whole: ports given back from a claim that
   * stays stay held against other users until the claim ends.
   */
  letGo(released: Iterable<RemovedPorts>): Promise<unknown> | undefined {
    const held = heldHere();
    const stops: Promise<void>[] = [];
    for (const { id, ports, whole } of released) {
      const tokens = held.get(id);
      if (tokens !== undefined) {
        tokens.close(whole ? undefined : ports);
        if (whole || tokens.ports.length === 0) held.delete(id);
      } else if (whole) {
        stops.push(stopKeeper(this.paths.keeperDir, id));
      }
    }
    return stops.length === 0 ? undefined : Promise.all(stops);
  }

  /**
   * Stops the keepers of this directory whose owner is gone (within a second they would let go
   * by themselves), so that a search that just dropped a dead claim gets its ports at once.
   * Resolves to how many it stopped.
   */
  sweep(): Promise<number> {
    return sweepKeepers(this.paths.keeperDir);
  }

  private startKeeper(claim: ClaimRecord, tokens: PortTokens): Promise<void> {
    const ttlMs = claim.expiresAt === undefined ? undefined : Math.max(1, claim.expiresAt - Date.now());
    return startKeeper(tokens, { pid: claim.pid, startTime: claim.startTime, ttlMs }, this.paths.keeperDir, claim.id, STATE_FILE_MODE);
  }
}

/**
 * The ports one search found claimed elsewhere in the network namespace: those whose token
 * bind failed, and once one did, every token `/proc/net/unix` shows (one read, so that a run of
 * ports another user holds costs one retry, not one per port).
 */
export class TokensElsewhere implements HeldElsewhere {
  readonly ports = new Set<number>();
  private described: DescribedClaim[] | undefined;

  /** Marks `taken` (ports whose tokens another holder has) and, the first time, every token in use. */
  add(taken: readonly number[]): void {
    for (const port of taken) this.ports.add(port);
    if (this.described !== undefined) return;
    const inUse = tokensInUse();
    for (const port of inUse.ports) this.ports.add(port);
    this.described = inUse.claims;
  }

  describe(base: number, max: number): { ports: number; by: string[] } {
    let ports = 0;
    for (const port of this.ports) if (port >= base && port <= max) ports++;
    const by = new Set<string>();
    for (const claim of this.described ?? []) {
      if (claim.start > max || claim.start + claim.count - 1 < base) continue;
      by.add(describeUser(claim.uid));
    }
    return { ports, by: [...by].sort() };
  }
}

/** `user ci (uid 1001)`, or `uid 1001` where the name is unknown here. */
export function describeUser(uid: number): string {
  const name = userName(uid);
  return name === undefined ? `uid ${uid}` : `user ${name} (uid ${uid})`;
}

/**
 * The claims held elsewhere in this network namespace, by other users or through other state
 * directories: the ports their tokens hold that none of `own` (this state file's claims) holds.
 */
export function claimsElsewhere(own: readonly ClaimRecord[]): ClaimElsewhere[] {
  const ownPorts = new Set(own.flatMap((claim) => claimedPorts(claim)));
  const { ports, claims } = tokensInUse();
  const foreign = [...ports].filter((port) => !ownPorts.has(port)).sort((a, b) => a - b);
  const described = claims.filter((claim) => !ownPorts.has(claim.start));
  const listed: ClaimElsewhere[] = [];
  const covered = new Set<number>();
  for (const claim of described.sort((a, b) => a.start - b.start)) {
    const claimPorts = Array.from({ length: claim.count }, (_, index) => claim.start + index).filter((port) => ports.has(port));
    if (claimPorts.length === 0) continue; // a description whose tokens are gone, or never were
    for (const port of claimPorts) covered.add(port);
    listed.push({ ports: claimPorts, uid: claim.uid, user: userName(claim.uid), pid: claim.pid, label: claim.label });
  }
  // Tokens nobody describes (a holder that could not, or would not): listed port by port run.
  for (const port of foreign) {
    if (covered.has(port)) continue;
    const last = listed[listed.length - 1];
    if (last !== undefined && last.uid === undefined && last.ports[last.ports.length - 1] === port - 1) last.ports.push(port);
    else listed.push({ ports: [port], uid: undefined, user: undefined, pid: undefined, label: undefined });
  }
  return listed.sort((a, b) => a.ports[0]! - b.ports[0]!);
}

/** Code of the warning emitted once when port tokens cannot be held here (see ports/port-tokens.ts). */
export const NO_PORT_TOKENS_WARNING = 'PORTLEASE_NO_PORT_TOKENS';

/** Where tokens are unavailable on Linux (the system refuses abstract sockets), says so once: claims then only hold within the state directory. */
export function warnNoTokens(reason: string): void {
  if (process.platform !== 'linux') return;
  warnOnce(
    NO_PORT_TOKENS_WARNING,
    `portlease: port tokens cannot be held here (${reason}); claims keep out only the processes of this state directory, not other users or containers.`,
    NO_PORT_TOKENS_WARNING,
  );
}
