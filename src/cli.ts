#!/usr/bin/env node
/**
 * The `portlease` command: claims for shell scripts and CI jobs. Thin over the library;
 * each command lives in src/cli/<command>.ts and is loaded only when it runs, so that
 * `--help` and `--version` start without loading the library.
 */
import { readFileSync } from 'node:fs';
import { describeFailure, EXIT_CODES } from './cli/exit-codes.js';
import { HELP } from './cli/help.js';

type Command = (args: string[]) => Promise<number>;

const COMMANDS: Readonly<Record<string, () => Promise<Command>>> = {
  claim: async () => (await import('./cli/claim.js')).runClaim,
  release: async () => (await import('./cli/release.js')).runRelease,
  list: async () => (await import('./cli/list.js')).runList,
  reap: async () => (await import('./cli/reap.js')).runReap,
  exec: async () => (await import('./cli/exec/exec.js')).runExec,
};

function version(): string {
  // dist/cli.js sits next to package.json's directory, in the repository and in an install.
  return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) {
    // A bare `portlease` is a usage mistake in a script: help on stderr, usage exit code.
    process.stderr.write(`${HELP['']}\n`);
    return EXIT_CODES.usage;
  }
  if (first === '--help' || first === '-h' || first === 'help') {
    process.stdout.write(`${HELP['']}\n`);
    return EXIT_CODES.ok;
  }
  if (first === '--version' || first === '-V') {
    process.stdout.write(`${version()}\n`);
    return EXIT_CODES.ok;
  }
  const load = Object.hasOwn(COMMANDS, first) ? COMMANDS[first] : undefined;
  if (load === undefined) {
    const { UsageError } = await import('./cli/args.js');
    throw new UsageError(`Unknown command ${JSON.stringify(first)}; expected claim, release, list, reap or exec. See 'portlease --help'.`);
  }
  return (await load())(rest);
}

// Node ignores SIGPIPE, so a reader that went away shows up as EPIPE on the next write:
// not an error of ours. End quietly, as a program killed by SIGPIPE would.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (error: NodeJS.ErrnoException) => {
    if (error.code !== 'EPIPE') throw error;
    process.exit(EXIT_CODES.brokenPipe);
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const { line, exitCode } = describeFailure(error);
    process.stderr.write(`${line}\n`);
    process.exitCode = exitCode;
  },
);
