import { UsageError } from './args.js';

// Shell-safe: a POSIX shell, make and docker compose all accept these as variable names.
const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const NAME_PREFIX = /^(?:[A-Za-z_][A-Za-z0-9_]*)?$/;

/** How the ports of one claim are named: the variable prefix and one name per port, if given. */
export interface PortNaming {
  /** Put in front of every variable name (`DB_` gives `DB_PORT`). */
  prefix: string;
  /** One name per port (`api` gives `API_PORT`), or `undefined` when not given. */
  names: readonly string[] | undefined;
}

/** Checks `--prefix`: the start of a variable name, or empty. */
export function parsePrefix(value: string | undefined): string {
  const prefix = value ?? '';
  if (!NAME_PREFIX.test(prefix)) {
    throw new UsageError(
      `Expected --prefix to be the start of an environment variable name (letters, digits, _), got ${JSON.stringify(prefix)}.`,
    );
  }
  return prefix;
}

/**
 * Checks `--names api,db,metrics`: each a shell-safe identifier, none twice (compared as
 * the upper-case variable names they become).
 */
export function parseNames(value: string | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  const names = value.split(',').map((name) => name.trim());
  const seen = new Set<string>();
  for (const name of names) {
    if (!NAME.test(name)) {
      throw new UsageError(
        `Expected --names to be comma-separated names of letters, digits and _ (not starting with a digit), such as api,db; got ${JSON.stringify(name)} in ${JSON.stringify(value)}.`,
      );
    }
    const upper = name.toUpperCase();
    if (seen.has(upper)) throw new UsageError(`--names has ${JSON.stringify(name)} twice (names are compared in upper case).`);
    seen.add(upper);
  }
  return names;
}

/**
 * The count a claim asks for: `--count`, else the number of `--names`, else 1 (the
 * library's default, left to it). Both given must agree.
 */
export function countFor(count: number | undefined, names: readonly string[] | undefined): number | undefined {
  if (names === undefined) return count;
  if (count !== undefined && count !== names.length) {
    throw new UsageError(`--count ${count} does not match the ${names.length} names of --names; give one of them, or make them agree.`);
  }
  return names.length;
}

/**
 * The variables of a claim, in a stable order: `PORT` (the first port), `PORTS` (all,
 * space-separated), `PORT_0` ... and, with names, `API_PORT` ..., each behind the prefix.
 * The same names serve as environment variables and as `{NAME}` placeholders.
 */
export function portVariables(naming: PortNaming, ports: readonly number[]): Map<string, string> {
  const { prefix, names } = naming;
  const variables = new Map<string, string>([
    [`${prefix}PORT`, String(ports[0])],
    [`${prefix}PORTS`, ports.join(' ')],
  ]);
  ports.forEach((port, index) => variables.set(`${prefix}PORT_${index}`, String(port)));
  names?.forEach((name, index) => variables.set(`${prefix}${name.toUpperCase()}_PORT`, String(ports[index])));
  return variables;
}

/**
 * `NAME=port` lines for `eval`, `.env` files, docker compose and make. Only variables
 * that hold one port: `PORTS` would need quoting, and each of those reads quotes differently.
 */
export function envLines(naming: PortNaming, ports: readonly number[]): string {
  const allPorts = `${naming.prefix}PORTS`;
  return [...portVariables(naming, ports)]
    .filter(([name]) => name !== allPorts)
    .map(([name, value]) => `${name}=${value}\n`)
    .join('');
}
