const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;
const DURATION_PATTERN = /^(?:\d+(?:ms|s|m|h|d))+$/;
const PART_PATTERN = /(\d+)(ms|s|m|h|d)/g;

/**
 * Parses a duration such as `90s`, `30m`, `2h`, `1h30m`, `500ms` or `1d` into milliseconds.
 * A unit is required: a bare `90` is refused rather than guessed at.
 *
 * @throws {RangeError} naming `what` and the value, when the text is not a positive duration.
 * @example
 * ```ts
 * parseDuration('1h30m'); // 5_400_000
 * ```
 */
export function parseDuration(text: string, what = 'duration'): number {
  if (!DURATION_PATTERN.test(text)) {
    throw new RangeError(
      `Expected ${what} to be a duration such as 90s, 30m, 2h or 1h30m (units ms, s, m, h, d), got ${JSON.stringify(text)}.`,
    );
  }
  let total = 0;
  for (const [, amount, unit] of text.matchAll(PART_PATTERN)) total += Number(amount) * UNIT_MS[unit as keyof typeof UNIT_MS];
  if (total < 1 || !Number.isSafeInteger(total)) {
    throw new RangeError(`Expected ${what} to be at least 1ms and finite, got ${JSON.stringify(text)}.`);
  }
  return total;
}

/** A short human form of a span of milliseconds, coarsest two units: `45s`, `3m12s`, `2h5m`, `3d4h`. */
export function formatDuration(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m${seconds % 60 === 0 ? '' : `${seconds % 60}s`}`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return `${hours}h${minutes % 60 === 0 ? '' : `${minutes % 60}m`}`;
  const days = Math.floor(hours / 24);
  return `${days}d${hours % 24 === 0 ? '' : `${hours % 24}h`}`;
}
