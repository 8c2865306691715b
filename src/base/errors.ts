/**
 * Every error code portlease raises. The codes are stable: branch on them,
 * not on messages.
 *
 * - `PORTLEASE_EXHAUSTED`: no run of free, unclaimed ports fits the request.
 * - `PORTLEASE_LOCK_TIMEOUT`: the state lock could not be taken in time.
 * - `PORTLEASE_UNSAFE_STATE_DIR`: the state directory is a symlink, owned by
 *   another user, or writable by others.
 * - `PORTLEASE_STATE_IO`: the state file or its directory could not be read or
 *   written (permissions, a full disk, ...). Nothing was claimed.
 * - `PORTLEASE_OWNER_NOT_ALIVE`: a claim was asked for on behalf of a process
 *   that does not exist.
 * - `PORTLEASE_RESOURCES`: the system ran out of a resource a probe needs (file
 *   descriptors, buffers, memory): nothing says the ports are taken.
 * - `PORTLEASE_HOST_UNAVAILABLE`: the requested host is not an address of this
 *   machine (or does not resolve), so no port on it can be bound.
 */
export type PortleaseErrorCode =
  | 'PORTLEASE_EXHAUSTED'
  | 'PORTLEASE_LOCK_TIMEOUT'
  | 'PORTLEASE_UNSAFE_STATE_DIR'
  | 'PORTLEASE_STATE_IO'
  | 'PORTLEASE_OWNER_NOT_ALIVE'
  | 'PORTLEASE_HOST_UNAVAILABLE'
  | 'PORTLEASE_RESOURCES'
  | 'PORTLEASE_UNSUPPORTED';

// Brands survive two copies of the package in one process (a CommonJS and an ESM build, two
// versions in a monorepo), where `instanceof` on the class alone would fail.
const kPortleaseError = Symbol.for('portlease.error');

/** The brand of an error of any copy: the code of the portlease class that made it ('' for the base class). */
function brandOf(value: unknown): string | undefined {
  if (!(value instanceof Error)) return undefined;
  const brand = (value as unknown as Record<symbol, unknown>)[kPortleaseError];
  return typeof brand === 'string' ? brand : undefined;
}

function isBranded(value: unknown): value is PortleaseError {
  return brandOf(value) !== undefined;
}

/** Base class of every error portlease raises on purpose (bad arguments raise `TypeError`/`RangeError`). */
export class PortleaseError extends Error {
  /** The code every instance of a subclass has; `undefined` on the base class. */
  static readonly code: PortleaseErrorCode | undefined = undefined;

  /**
   * `instanceof` that also recognises errors of another copy of portlease: by brand, and for
   * a subclass by its code.
   */
  static override [Symbol.hasInstance](value: unknown): boolean {
    // A caller's own subclass keeps the ordinary prototype check: it must not match every
    // portlease error, nor one of another code.
    if (!Object.hasOwn(this, 'code')) return Function.prototype[Symbol.hasInstance].call(this, value);
    const brand = brandOf(value);
    return brand !== undefined && (this.code === undefined || brand === this.code);
  }

  override name = 'PortleaseError';
  /** Stable, documented error code. */
  readonly code: PortleaseErrorCode;

  // Not `ErrorOptions`: that needs lib es2022 in every consumer's compilation (see test/package).
  constructor(code: PortleaseErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    // The nearest of our classes above the one constructed (a caller may subclass ours).
    let own: { code?: PortleaseErrorCode | undefined } | null = new.target;
    while (own !== null && !Object.hasOwn(own, 'code')) own = Object.getPrototypeOf(own) as typeof own;
    Object.defineProperty(this, kPortleaseError, { value: own?.code ?? '' });
  }
}

/** What a search passed over before it gave up, for {@link PortsExhaustedError}'s message. */
export interface ExhaustedDetail {
  /** Kinds of ports skipped without probing (e.g. "claimed ports", "the ephemeral range 32768-60999"). */
  skipped: readonly string[];
  /** How many probed ports turned out busy. */
  busy: number;
  /**
   * Ports claimed elsewhere in this network namespace (by other users, or through another state
   * directory) that the search passed over, and who claimed them, as far as they say.
   */
  elsewhere?: { ports: number; by: readonly string[] } | undefined;
  /** The host they were probed on. */
  host: string;
  /** The highest port searched (the `max` option). */
  max?: number | undefined;
}

/** No run of `count` consecutive free, unclaimed ports exists in the searched range. */
export class PortsExhaustedError extends PortleaseError {
  static override readonly code = 'PORTLEASE_EXHAUSTED' as const;
  override name = 'PortsExhaustedError';
  /** First port of the searched range. */
  readonly base: number;
  /** Number of consecutive ports asked for. */
  readonly count: number;
  /** Last port of the searched range (the `max` option, else 65535). */
  readonly max: number;

  constructor(base: number, count: number, detail?: ExhaustedDetail) {
    const max = detail?.max ?? 65535;
    const skipped = detail === undefined || detail.skipped.length === 0 ? '' : `, after skipping ${detail.skipped.join(', ')}`;
    const busy =
      detail === undefined || detail.busy === 0
        ? ''
        : `; ${detail.busy} port${detail.busy === 1 ? ' was' : 's were'} busy on ${detail.host}`;
    const elsewhere = detail?.elsewhere;
    const others =
      elsewhere === undefined || elsewhere.ports === 0
        ? ''
        : `; ${elsewhere.ports} port${elsewhere.ports === 1 ? ' is' : 's are'} claimed by other users or containers` +
          (elsewhere.by.length === 0 ? '' : ` (${elsewhere.by.join(', ')})`);
    super(
      'PORTLEASE_EXHAUSTED',
      `No run of ${count} consecutive free port${count === 1 ? '' : 's'} in ${base}-${max}${max < 65535 ? ' (max)' : ''}${skipped}${busy}${others}.`,
    );
    this.base = base;
    this.count = count;
    this.max = max;
  }
}

/** The cross-process lock on the state file was not acquired within `lockTimeoutMs`. */
export class LockTimeoutError extends PortleaseError {
  static override readonly code = 'PORTLEASE_LOCK_TIMEOUT' as const;
  override name = 'LockTimeoutError';
  /** The lock directory that stayed held. */
  readonly lockPath: string;
  /** Why a stale lock could not be broken, when that is what kept it held. */
  readonly breakFailure: string | undefined;

  /** @param breakFailure - why a stale lock could not be broken, when that is what kept it held. */
  constructor(lockPath: string, timeoutMs: number, breakFailure?: string) {
    super(
      'PORTLEASE_LOCK_TIMEOUT',
      breakFailure === undefined
        ? `Timed out after ${timeoutMs} ms waiting for the portlease lock ${lockPath}; ` +
            'another process holds it. Raise lockTimeoutMs, or remove the lock directory if no portlease process is running.'
        : `Timed out after ${timeoutMs} ms waiting for the portlease lock ${lockPath}: it is stale but ${breakFailure}. ` +
            'Remove it by hand, or give portlease a state directory of its own.',
    );
    this.lockPath = lockPath;
    this.breakFailure = breakFailure;
  }
}

/** The state directory could be tampered with by someone else, so it is not used. */
export class UnsafeStateDirError extends PortleaseError {
  static override readonly code = 'PORTLEASE_UNSAFE_STATE_DIR' as const;
  override name = 'UnsafeStateDirError';
  /** The refused directory. */
  readonly path: string;

  constructor(path: string, reason: string) {
    super(
      'PORTLEASE_UNSAFE_STATE_DIR',
      `Refusing to use state directory ${path}: ${reason}. ` +
        'Fix it, or use a directory only you can write (the stateDir option, --state-dir or PORTLEASE_STATE_DIR), ' +
        'the same for every process that must coordinate.',
    );
    this.path = path;
  }
}

/**
 * What to do about most {@link StateIoError}s, appended to their messages: every portlease
 * message says what happened and then what to do.
 */
export const STATE_IO_ADVICE =
  'Check that you may read and write there and that the disk is not full, or set PORTLEASE_STATE_DIR to a directory of your own.';

/** The state file or directory could not be read or written; no claim was changed. */
export class StateIoError extends PortleaseError {
  static override readonly code = 'PORTLEASE_STATE_IO' as const;
  override name = 'StateIoError';

  constructor(message: string, cause: unknown) {
    super('PORTLEASE_STATE_IO', message, { cause });
  }
}

/** A claim on behalf of another process was asked for, but that process is not running. */
export class OwnerNotAliveError extends PortleaseError {
  static override readonly code = 'PORTLEASE_OWNER_NOT_ALIVE' as const;
  override name = 'OwnerNotAliveError';
  /** The PID that is not alive. */
  readonly pid: number;

  constructor(pid: number) {
    super('PORTLEASE_OWNER_NOT_ALIVE', `Cannot claim ports for pid ${pid}: no such process is running.`);
    this.pid = pid;
  }
}

/** No port can be bound on the requested host: it is not an address of this machine. */
export class HostUnavailableError extends PortleaseError {
  static override readonly code = 'PORTLEASE_HOST_UNAVAILABLE' as const;
  override name = 'HostUnavailableError';
  /** The host that could not be bound. */
  readonly host: string;

  constructor(host: string, cause: unknown) {
    super(
      'PORTLEASE_HOST_UNAVAILABLE',
      `Cannot bind on host ${JSON.stringify(host)}: ${(cause as Error).message}. Use an address of this machine, such as 127.0.0.1 or 0.0.0.0.`,
      { cause },
    );
    this.host = host;
  }
}

// The socket could not even be made: nothing is known about the port, and trying the next
// one would fail the same way.
const RESOURCE_ERRORS: ReadonlySet<string> = new Set(['EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM']);

/** Whether a system error means the process or the system ran out of something, not that a port is taken. */
export function isResourceExhaustion(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code !== undefined && RESOURCE_ERRORS.has(code);
}

/**
 * A probe (or a port token, or a keeper process) could not even be tried: the process or the
 * system ran out of file descriptors (EMFILE, ENFILE), socket buffers (ENOBUFS), memory
 * (ENOMEM) or processes (EAGAIN). Raised at once, with the system error as `cause`, instead
 * of counting every port as busy.
 */
export class ResourcesExhaustedError extends PortleaseError {
  static override readonly code = 'PORTLEASE_RESOURCES' as const;
  override name = 'ResourcesExhaustedError';

  /** @param action - what could not be done, for the message (default: probe ports). */
  constructor(cause: NodeJS.ErrnoException, action = 'probe ports') {
    super(
      'PORTLEASE_RESOURCES',
      `Cannot ${action}: ${cause.code ?? 'a system limit'} (${cause.message}). ` +
        'Close unused files or sockets, or raise the limit (ulimit -n, ulimit -u), and try again.',
      { cause },
    );
  }
}

/** What was asked cannot be done on this platform (e.g. handing listening sockets to a child on Windows). */
export class UnsupportedError extends PortleaseError {
  static override readonly code = 'PORTLEASE_UNSUPPORTED' as const;
  override name = 'UnsupportedError';

  /** @param message - what cannot be done here, and why. */
  constructor(message: string) {
    super('PORTLEASE_UNSUPPORTED', message);
  }
}

/** The error class of each code. */
export interface PortleaseErrorByCode {
  PORTLEASE_EXHAUSTED: PortsExhaustedError;
  PORTLEASE_LOCK_TIMEOUT: LockTimeoutError;
  PORTLEASE_UNSAFE_STATE_DIR: UnsafeStateDirError;
  PORTLEASE_STATE_IO: StateIoError;
  PORTLEASE_OWNER_NOT_ALIVE: OwnerNotAliveError;
  PORTLEASE_HOST_UNAVAILABLE: HostUnavailableError;
  PORTLEASE_RESOURCES: ResourcesExhaustedError;
  PORTLEASE_UNSUPPORTED: UnsupportedError;
}

/**
 * Whether `value` is an error raised by portlease (by any copy of the package), and with a
 * code, whether it has that code; it then narrows to that code's class.
 *
 * @example
 * ```ts
 * if (isPortleaseError(error, 'PORTLEASE_LOCK_TIMEOUT')) console.error(error.lockPath);
 * ```
 */
export function isPortleaseError<C extends PortleaseErrorCode>(value: unknown, code: C): value is PortleaseErrorByCode[C];
export function isPortleaseError(value: unknown): value is PortleaseError;
export function isPortleaseError(value: unknown, code?: PortleaseErrorCode): boolean {
  return isBranded(value) && (code === undefined || value.code === code);
}
