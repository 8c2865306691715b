import type { Lease } from '../claims/lease.js';
import { listenOn } from '../ports/listen.js';
import { allocatorFor, type ClaimPortsOptions, listClaims } from './default-allocator.js';
import { inheritedOnceValue, onceEnvName } from '../options/options.js';
import { processSlot } from '../base/process-state.js';

/** What a claiming process leaves in its environment for its descendants. */
interface Inherited {
  pid: number;
  ports: number[];
  host: string;
  label?: string | undefined;
}

function parseInherited(text: string | undefined): Inherited | undefined {
  if (text === undefined || text === '') return undefined;
  try {
    const value = JSON.parse(text) as Partial<Inherited>;
    const valid =
      Number.isInteger(value.pid) &&
      Array.isArray(value.ports) &&
      value.ports.length > 0 &&
      value.ports.every((port) => Number.isInteger(port)) &&
      typeof value.host === 'string';
    return valid ? (value as Inherited) : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a live claim of the ancestor still holds exactly these ports (not a stale, exported value). */
async function stillHeld(inherited: Inherited, stateDir: string | undefined): Promise<boolean> {
  const claims = await listClaims({ stateDir });
  return claims.some(
    (claim) =>
      claim.pid === inherited.pid &&
      claim.ports.length === inherited.ports.length &&
      claim.ports.every((port, i) => port === inherited.ports[i]),
  );
}

function inheritedLease(inherited: Inherited): Lease {
  // Not ours to give back: the claiming ancestor holds the ports until it exits.
  const release = (): Promise<void> => Promise.resolve();
  return {
    ports: Object.freeze([...inherited.ports]),
    port: inherited.ports[0]!,
    host: inherited.host,
    pid: inherited.pid,
    label: inherited.label,
    release,
    listen: (host = inherited.host) => listenOn(inherited.ports, host),
    [Symbol.asyncDispose]: release,
  };
}

/**
 * Claims ports once for a whole process tree. The first process to call it with `name`
 * claims (as {@link claimPorts} does) and records the ports in its environment variable
 * `PORTLEASE_ONCE_<NAME>`, which every process it starts afterwards inherits; their calls
 * with the same name return the same ports without claiming. The claim belongs to the first
 * process and lasts until it exits (or releases its lease); a descendant's `release()` does
 * nothing.
 *
 * Made for configuration files that test runners evaluate in the runner and again in every
 * worker (Playwright's config, a vitest or jest setup file): all of them, and the servers the
 * runner starts (Playwright's `webServer`), then agree on one set of ports. A value left in
 * the environment by a process that no longer holds those ports (exported by hand, a dead
 * ancestor) is ignored and a new claim made. Worker threads each get a copy of the
 * environment when they start: call it in the main thread before starting them, or each
 * thread makes a claim of its own.
 *
 * @param name - Letters, digits and `_`; one claim per name per process tree.
 * @param options - As for {@link claimPorts}; used only by the process that claims.
 * @throws {TypeError} when `name` is not a valid name; otherwise as {@link claimPorts}.
 * @example
 * ```ts
 * // playwright.config.ts (an ES module): the runner claims, workers inherit.
 * const { port } = await claimOnce('web', { host: '127.0.0.1' });
 * export default defineConfig({
 *   use: { baseURL: `http://127.0.0.1:${port}` },
 *   webServer: { command: `node server.js ${port}`, port },
 * });
 * ```
 */
export async function claimOnce(name: string, options: ClaimPortsOptions = {}): Promise<Lease> {
  // Calls with one name take turns within a process (each copy of portlease included), so
  // two at once in the first process do not both claim: the second finds the first's ports.
  const turns = processSlot('claim-once-turns.v1', () => new Map<string, Promise<unknown>>());
  const key = onceEnvName(name);
  const previous = turns.get(key) ?? Promise.resolve();
  const mine = previous.catch(() => undefined).then(() => claimOnceNow(name, options));
  turns.set(key, mine);
  try {
    return await mine;
  } finally {
    if (turns.get(key) === mine) turns.delete(key);
  }
}

async function claimOnceNow(name: string, options: ClaimPortsOptions): Promise<Lease> {
  const stateDir = typeof options === 'object' && options !== null ? options.stateDir : undefined;
  const inherited = parseInherited(inheritedOnceValue(name));
  if (inherited !== undefined && (await stillHeld(inherited, stateDir))) {
    return inheritedLease(inherited);
  }
  // Not through claimPorts: a bare release() elsewhere in the tree's first process must not
  // take the ports every descendant was promised.
  const claimOptions: ClaimPortsOptions = typeof options === 'object' && options !== null ? { ...options } : {};
  delete claimOptions.stateDir;
  const lease = await allocatorFor(stateDir).claim(claimOptions);
  const record: Inherited = { pid: lease.pid, ports: [...lease.ports], host: lease.host, label: lease.label };
  // The one variable portlease writes: the processes this one starts from now on inherit it.
  process.env[onceEnvName(name)] = JSON.stringify(record);
  return lease;
}
