import { isPortleaseError } from '../base/errors.js';
import { UsageError } from './args.js';

/**
 * Exit codes of the `portlease` command, documented in the README and in `--help`.
 * `exec` exits with its command's code instead once the command has started.
 */
export const EXIT_CODES = {
  /** Done. */
  ok: 0,
  /** Any other failure: state directory unsafe or unreadable, owner not alive, host unavailable. */
  failure: 1,
  /** Bad usage: unknown flag, malformed value, missing command. Nothing was changed. */
  usage: 2,
  /** `PORTLEASE_EXHAUSTED`: no run of free ports fits. */
  exhausted: 3,
  /** `PORTLEASE_LOCK_TIMEOUT`: another process held the state lock too long. */
  lockTimeout: 4,
  /**
   * The reader of the output went away (`portlease list | head -1`): what a shell reports
   * for a program killed by SIGPIPE (128 + 13). What was claimed or released stays so.
   */
  brokenPipe: 141,
} as const;

/** One line for stderr (no trailing newline) and the exit code for a failure. */
export function describeFailure(error: unknown): { line: string; exitCode: number } {
  const oneLine = (text: string): string => `portlease: ${text.replace(/\s*\n\s*/g, ' ')}`;
  if (error instanceof UsageError) return { line: oneLine(`${error.code}: ${error.message}`), exitCode: EXIT_CODES.usage };
  if (isPortleaseError(error, 'PORTLEASE_EXHAUSTED')) {
    return {
      line: oneLine(
        `${error.code}: ${error.message} Try another --base, a smaller --count or a higher --max; 'portlease list' shows who holds what.`,
      ),
      exitCode: EXIT_CODES.exhausted,
    };
  }
  if (isPortleaseError(error, 'PORTLEASE_LOCK_TIMEOUT')) {
    // The library's hint names an API option; the command line has no such flag.
    const { lockPath, breakFailure } = error;
    const line =
      breakFailure === undefined
        ? `${error.code}: another process held the lock ${lockPath} too long. Retry; if no portlease process is running, remove that directory.`
        : `${error.code}: the lock ${lockPath} is stale but portlease ${breakFailure}. Remove it by hand.`;
    return {
      line: oneLine(line),
      exitCode: EXIT_CODES.lockTimeout,
    };
  }
  if (isPortleaseError(error)) return { line: oneLine(`${error.code}: ${error.message}`), exitCode: EXIT_CODES.failure };
  const message = error instanceof Error ? error.message : String(error);
  return { line: oneLine(`unexpected error: ${message}`), exitCode: EXIT_CODES.failure };
}
