import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { ClaimOptions, Protocol } from '../options/options.js';
import type { PortExclusion } from '../base/port-numbers.js';

// @types/node does not export the options map's own name.
type ParseArgsOptionsConfig = NonNullable<ParseArgsConfig['options']>;

/**
 * The command line was wrong: an unknown flag, a missing or malformed value, a missing
 * command. Raised before any state is read or written; the CLI exits with code 2.
 */
export class UsageError extends Error {
  override name = 'UsageError';
  /** Stable code, printed in front of the message. */
  readonly code = 'PORTLEASE_USAGE';
}

/** Options every command takes. */
export const COMMON_OPTIONS = {
  'state-dir': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsOptionsConfig;

/** Options that shape a claim, shared by `claim` and `exec`. */
export const CLAIM_SHAPE_OPTIONS = {
  count: { type: 'string', short: 'n' },
  base: { type: 'string' },
  max: { type: 'string' },
  host: { type: 'string' },
  label: { type: 'string' },
  protocol: { type: 'string' },
  exclude: { type: 'string' },
  'allow-ephemeral': { type: 'boolean' },
  'allow-unsafe': { type: 'boolean' },
  'allow-reserved': { type: 'boolean' },
  sticky: { type: 'boolean' },
} as const satisfies ParseArgsOptionsConfig;

/** The values of parsed options: booleans for flags, strings otherwise, absent when not given. */
export type OptionValues<T extends ParseArgsOptionsConfig> = {
  [K in keyof T]?: T[K] extends { type: 'boolean' } ? boolean : string;
};

/** What {@link parseCommandLine} found. */
export interface ParsedCommandLine<T extends ParseArgsOptionsConfig> {
  values: OptionValues<T>;
  /** Positionals before any `--`. */
  positionals: string[];
  /** Everything after the first `--`, untouched; `undefined` when there was no `--`. */
  afterTerminator: string[] | undefined;
}

/**
 * `util.parseArgs` in strict mode, with its errors turned into {@link UsageError}s that
 * point at the command's help. Positionals after `--` are returned apart, untouched.
 */
export function parseCommandLine<const T extends ParseArgsOptionsConfig>(
  command: string,
  args: string[],
  options: T,
): ParsedCommandLine<T> {
  checkValuesThatLookLikeOptions(command, args, options);
  let parsed;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: true, tokens: true });
  } catch (error) {
    // parseArgs' advice on positionals that start with '-' does not fit our commands.
    const message = (error as Error).message.replace(/ To specify a positional argument.*$/s, '').replace(/\s*\n\s*/g, ' ');
    throw new UsageError(`${message} See 'portlease ${command} --help'.`, { cause: error });
  }
  const terminator = parsed.tokens.find((token) => token.kind === 'option-terminator');
  const positionals: string[] = [];
  let afterTerminator: string[] | undefined;
  if (terminator !== undefined) afterTerminator = args.slice(terminator.index + 1);
  for (const token of parsed.tokens) {
    if (token.kind === 'positional' && (terminator === undefined || token.index < terminator.index)) positionals.push(token.value);
  }
  // Given twice, an option would silently take its last value: say so instead.
  const seen = new Set<string>();
  for (const token of parsed.tokens) {
    if (token.kind !== 'option' || (terminator !== undefined && token.index > terminator.index)) continue;
    if (seen.has(token.name)) throw new UsageError(`--${token.name} is given more than once. See 'portlease ${command} --help'.`);
    seen.add(token.name);
  }
  // No option here is `multiple`, so each value is one string or one boolean.
  return { values: parsed.values as OptionValues<T>, positionals, afterTerminator };
}

/**
 * parseArgs refuses `--count -2` as "ambiguous": a value that starts with '-' gets a message
 * about the value instead (before anything is parsed, so nothing else is said first).
 */
function checkValuesThatLookLikeOptions(command: string, args: readonly string[], options: ParseArgsOptionsConfig): void {
  const terminator = args.indexOf('--');
  const end = terminator === -1 ? args.length : terminator;
  for (let index = 0; index < end - 1; index++) {
    const arg = args[index]!;
    const name = arg.startsWith('--') ? arg.slice(2) : Object.keys(options).find((key) => `-${options[key]!.short}` === arg);
    if (name === undefined || options[name]?.type !== 'string') continue;
    const value = args[index + 1]!;
    if (!value.startsWith('-') || value === '--') continue;
    if (/^-\d/.test(value)) {
      throw new UsageError(
        `Expected --${name} to be a whole number, got ${JSON.stringify(value)} (negative numbers are not allowed). See 'portlease ${command} --help'.`,
      );
    }
    throw new UsageError(`The value of --${name} starts with '-': write it as --${name}=${value}. See 'portlease ${command} --help'.`);
  }
}

/** A whole number given as `--name VALUE`, or `undefined` when the option was absent. Range checks are the library's. */
export function parseWholeNumber(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,15}$/.test(value)) {
    throw new UsageError(`Expected --${name} to be a whole number, got ${JSON.stringify(value)}. See 'portlease --help'.`);
  }
  return Number(value);
}

/**
 * Runs `validate` (a library option check) and turns its `TypeError`/`RangeError` into a
 * {@link UsageError}, so that only bad input, never a bug, exits with the usage code.
 */
export function asUsage<T>(command: string, validate: () => T): T {
  try {
    return validate();
  } catch (error) {
    if (error instanceof TypeError || error instanceof RangeError) {
      throw new UsageError(`${error.message} See 'portlease ${command} --help'.`, { cause: error });
    }
    throw error;
  }
}

/** Refuses positionals a command does not take. */
export function noPositionals(command: string, positionals: readonly string[]): void {
  if (positionals.length > 0) {
    throw new UsageError(`Unexpected argument ${JSON.stringify(positionals[0])}. See 'portlease ${command} --help'.`);
  }
}

const PROTOCOLS: readonly string[] = ['tcp', 'udp', 'both'] satisfies Protocol[];

/** `--exclude 5432,6379-6380` as the library's exclusions; range checks are the library's. */
export function parseExclusions(value: string | undefined): PortExclusion[] | undefined {
  if (value === undefined) return undefined;
  return value.split(',').map((item) => {
    const match = /^\s*(\d{1,5})(?:\s*-\s*(\d{1,5}))?\s*$/.exec(item);
    if (match === null) {
      throw new UsageError(
        `Expected --exclude to be ports and ranges such as 5432,6379-6380, got ${JSON.stringify(value)}. See 'portlease --help'.`,
      );
    }
    return match[2] === undefined ? Number(match[1]) : ([Number(match[1]), Number(match[2])] as const);
  });
}

/** The claim options shared by `claim` and `exec`, from their parsed flags (unchecked: the library checks). */
export function claimShape(values: OptionValues<typeof CLAIM_SHAPE_OPTIONS>): ClaimOptions {
  if (values.protocol !== undefined && !PROTOCOLS.includes(values.protocol)) {
    throw new UsageError(`Expected --protocol to be tcp, udp or both, got ${JSON.stringify(values.protocol)}. See 'portlease --help'.`);
  }
  return {
    count: parseWholeNumber('count', values.count),
    base: parseWholeNumber('base', values.base),
    max: parseWholeNumber('max', values.max),
    host: values.host,
    label: values.label,
    protocol: values.protocol as Protocol | undefined,
    exclude: parseExclusions(values.exclude),
    allowEphemeralPorts: values['allow-ephemeral'],
    allowUnsafePorts: values['allow-unsafe'],
    allowReservedPorts: values['allow-reserved'],
    sticky: values.sticky,
  };
}
