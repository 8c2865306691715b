/**
 * Port tokens: a claim as the whole network namespace sees it.
 *
 * A port belongs to a network namespace, not to a user or a file system, and on Linux so does
 * an abstract Unix socket name (a leading NUL byte): every user and every mount namespace that
 * shares the network namespace sees the same names, only one socket at a time can bind a name,
 * and the kernel frees it the instant its holder dies, however it dies. So the holder of a
 * claim also binds one name per claimed port, `portlease/v1/port/<port>`: two claims of one
 * port can never both stand, whoever makes them and whatever state directory they see, with no
 * daemon and no file that another user could touch. A token is only ever bound, never
 * connected to: nothing another user listens on is reached.
 *
 * Next to its tokens a claim binds a name that describes it (user, ports, owner PID, label),
 * for `portlease list` and the "exhausted" message of other users; anyone can bind any name,
 * so that one is informational only.
 *
 * Elsewhere (macOS, Windows) there are no abstract names, and coordination stops at the state
 * directory (docs/design.md, "The scope of a claim").
 */
import { readFileSync } from 'node:fs';
import { Server, type Socket } from 'node:net';
import { isResourceExhaustion, ResourcesExhaustedError } from '../base/errors.js';
import { isPort, isPortRun } from '../base/port-numbers.js';

/** Whether this platform has port tokens (abstract Unix socket names). */
export const hasPortTokens = process.platform === 'linux';

const TOKEN_PREFIX = 'portlease/v1/port/';
const INFO_PREFIX = 'portlease/v1/claim/';
// sun_path holds 108 bytes on Linux: the leading NUL and 107 of name.
const NAME_BYTES = 107;
const FILLER = '~';

/**
 * `name` filled up to the whole of sun_path. An abstract name is the bytes the address length
 * covers, and Node's libuv counts them differently by version (Node 20's libuv 1.46 passes the
 * whole sun_path, NULs included; 1.48 and later the name's own length): a name that fills
 * sun_path is the same name under both, so every version of portlease on every Node binds the
 * same token for a port.
 */
function abstractName(name: string): string {
  return `\0${name}${FILLER.repeat(Math.max(0, NAME_BYTES - Buffer.byteLength(name)))}`;
}

const tokenNames = new Map<number, string>();

/** The abstract socket name of `port`'s token (with its leading NUL): `portlease/v1/port/<port>` filled with `~`. */
export function tokenName(port: number): string {
  let name = tokenNames.get(port);
  if (name === undefined) {
    name = abstractName(`${TOKEN_PREFIX}${port}`);
    tokenNames.set(port, name);
  }
  return name;
}

/** What a claim says about itself to other users, in the name next to its tokens. */
export interface ClaimDescription {
  /** The claimer's user id. */
  uid: number;
  start: number;
  count: number;
  /** The owner's PID, in the owner's PID namespace. */
  pid: number;
  label?: string | undefined;
}

/** The abstract socket name describing a claim: `portlease/v1/claim/<uid>/<start>/<count>/<pid>/<label>`. */
export function descriptionName(claim: ClaimDescription): string {
  const head = `${INFO_PREFIX}${claim.uid}/${claim.start}/${claim.count}/${claim.pid}/`;
  // Labels are free text: only characters that cannot end the field, fill it, or upset a terminal.
  const label = (claim.label ?? '').replace(/[^\w.-]/g, '_');
  return abstractName(head + label.slice(0, Math.max(0, NAME_BYTES - head.length)));
}

const noop = (): void => {};

/**
 * Binds `name`: the server, or the bind's error. Node binds a pipe synchronously inside
 * `listen()` and reports only an error on a later tick, so a success costs no turn of the
 * event loop; only a failure is waited for, to learn its code.
 */
function bindName(name: string): Server | Promise<NodeJS.ErrnoException> {
  const server = new Server({ pauseOnConnect: true }, dropConnection);
  // exclusive: a cluster worker would otherwise ask its primary to bind.
  server.listen({ path: name, exclusive: true });
  if (!server.listening) {
    // The error is emitted on a later tick: listening for it now is in time.
    const failed = new Promise<NodeJS.ErrnoException>((resolve) => server.once('error', resolve));
    server.close();
    return failed;
  }
  // Errors after the bind (an accept failing for lack of descriptors) must not crash the holder.
  server.on('error', noop);
  server.unref();
  return server;
}

/** Nobody has a reason to connect to a token: whatever does is dropped at once. */
function dropConnection(socket: Socket): void {
  socket.destroy();
}

/** The tokens (and description) one process holds for one claim, or for part of it. */
export class PortTokens {
  private readonly servers: Map<number, Server>;
  private readonly describing: ClaimDescription | undefined;
  private description: Server | undefined;
  private pending: NodeJS.Immediate | undefined;

  /** @param describing - what the description name says, bound a moment later (see {@link describeSoon}). */
  constructor(servers: Map<number, Server>, describing: ClaimDescription | undefined) {
    this.servers = servers;
    this.describing = describing;
  }

  /** The ports whose tokens are held here, ascending. */
  get ports(): number[] {
    return [...this.servers.keys()].sort((a, b) => a - b);
  }

  /**
   * Binds the description once the claim outlives the current turn of the event loop: it is
   * for other users' listings, and a claim given back at once (a probe's retry, a hot loop)
   * need not pay for it.
   */
  describeSoon(): void {
    if (this.describing === undefined || this.pending !== undefined || this.description !== undefined) return;
    this.pending = setImmediate(() => this.describeNow());
    this.pending.unref();
  }

  /** Binds the description now (best effort: a name someone else bound first leaves the claim undescribed). */
  describeNow(): void {
    if (this.pending !== undefined) clearImmediate(this.pending);
    this.pending = undefined;
    if (this.describing === undefined || this.description !== undefined || this.servers.size === 0) return;
    const outcome = bindName(descriptionName(this.describing));
    if (outcome instanceof Server) this.description = outcome;
  }

  /**
   * The descriptors of the sockets (tokens first, then the description), to hand to a process
   * that holds them on (see claims/keeper.ts); this process keeps its own copies.
   */
  fds(): number[] {
    this.describeNow();
    const servers = [...this.servers.values(), ...(this.description === undefined ? [] : [this.description])];
    return servers.map((server) => (server as unknown as { _handle: { fd: number } })._handle.fd);
  }

  /**
   * Lets go of the tokens of `ports` (default: all, with the description). Synchronous: the
   * names are free for anyone when this returns.
   */
  close(ports?: Iterable<number>): void {
    for (const port of ports ?? [...this.servers.keys()]) {
      this.servers.get(port)?.close();
      this.servers.delete(port);
    }
    if (this.servers.size === 0) {
      if (this.pending !== undefined) clearImmediate(this.pending);
      this.pending = undefined;
      this.description?.close();
      this.description = undefined;
    }
  }
}

/** What {@link takeTokens} got. */
export type TakenTokens =
  /** Every token is held here now. */
  | { kind: 'held'; tokens: PortTokens }
  /** Some ports are claimed elsewhere in this network namespace; nothing is held. */
  | { kind: 'taken'; ports: number[] }
  /** Tokens cannot be bound here (not Linux, or the system refuses abstract sockets): nothing is held. */
  | { kind: 'unavailable'; reason: string };

/**
 * Binds the token of every port of `ports`, and the description of the claim when given.
 * All or nothing: when any token is held elsewhere, the ones bound are let go again. A
 * success is answered synchronously (a bind is), a failure once its cause is known.
 *
 * @throws {ResourcesExhaustedError} when the process or the system is out of descriptors.
 */
export function takeTokens(ports: readonly number[], description?: ClaimDescription): TakenTokens | Promise<TakenTokens> {
  if (!hasPortTokens) return { kind: 'unavailable', reason: `${process.platform} has no abstract socket names` };
  const bound = ports.map((port) => bindName(tokenName(port)));
  const servers = new Map<number, Server>();
  const failures: Array<{ port: number; error: Promise<NodeJS.ErrnoException> }> = [];
  bound.forEach((outcome, index) => {
    if (outcome instanceof Server) servers.set(ports[index]!, outcome);
    else failures.push({ port: ports[index]!, error: outcome });
  });
  if (failures.length === 0) {
    const tokens = new PortTokens(servers, description);
    tokens.describeSoon();
    return { kind: 'held', tokens };
  }
  for (const server of servers.values()) server.close();
  return whyNotTaken(failures);
}

/** What failed binds mean: taken elsewhere, or tokens unavailable here (out of descriptors: thrown). */
async function whyNotTaken(failures: ReadonlyArray<{ port: number; error: Promise<NodeJS.ErrnoException> }>): Promise<TakenTokens> {
  const errors = await Promise.all(failures.map(async ({ port, error }) => ({ port, error: await error })));
  const failure = errors.find(({ error }) => error.code !== 'EADDRINUSE')?.error;
  if (failure === undefined) return { kind: 'taken', ports: errors.map(({ port }) => port) };
  // The bind's message names the socket: a page of filler, of no use to anyone reading it.
  failure.message = failure.message.replace(/[\0\s]*portlease\/v1\/\S*/, '');
  if (isResourceExhaustion(failure)) throw new ResourcesExhaustedError(failure, 'hold port tokens');
  return { kind: 'unavailable', reason: `${failure.code ?? ''} ${failure.message}`.trim() };
}

/** A claim of this network namespace, as its holder describes it (see {@link descriptionName}). */
export interface DescribedClaim extends ClaimDescription {
  label: string | undefined;
}

/** What the network namespace holds: every port with a token, and the claims that describe themselves. */
export interface TokensInUse {
  ports: Set<number>;
  claims: DescribedClaim[];
}

/** The bound names of `/proc/net/unix` (its last column), abstract ones starting with `@`. */
export function parseUnixSockets(table: string): TokensInUse {
  const ports = new Set<number>();
  const claims = new Map<string, DescribedClaim>();
  for (const line of table.split('\n')) {
    const at = line.indexOf(' @portlease/v1/');
    if (at === -1) continue;
    // Without the filler, and without the NULs (shown as '@') of a name bound shorter.
    const name = line
      .slice(at + 2)
      .trimEnd()
      .replace(/[~@]+$/, '');
    if (name.startsWith(TOKEN_PREFIX)) {
      const port = Number(name.slice(TOKEN_PREFIX.length));
      if (/^\d{1,5}$/.test(name.slice(TOKEN_PREFIX.length)) && isPort(port)) ports.add(port);
    } else if (name.startsWith(INFO_PREFIX)) {
      const [uid, start, count, pid, label] = name.slice(INFO_PREFIX.length).split('/');
      const fields = [uid, start, count, pid].map((field) => (field !== undefined && /^\d{1,10}$/.test(field) ? Number(field) : NaN));
      if (fields.some(Number.isNaN) || !isPortRun(fields[1], fields[2])) continue;
      // A connection accepted on a name shows it again: one entry per name.
      claims.set(name, { uid: fields[0]!, start: fields[1]!, count: fields[2]!, pid: fields[3]!, label: label || undefined });
    }
  }
  return { ports, claims: [...claims.values()] };
}

/**
 * Every port token and claim description bound in this network namespace now, by anyone, from
 * `/proc/net/unix` (read-only: no socket is touched). Empty where there are no tokens.
 */
export function tokensInUse(): TokensInUse {
  if (!hasPortTokens) return { ports: new Set(), claims: [] };
  let table: string;
  try {
    table = readFileSync('/proc/net/unix', 'latin1');
  } catch {
    return { ports: new Set(), claims: [] };
  }
  return parseUnixSockets(table);
}
