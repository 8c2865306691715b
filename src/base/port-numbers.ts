/** Port numbers and inclusive ranges of them: the checks and helpers every subsystem shares. */

/** The highest TCP/UDP port number. */
export const MAX_PORT = 65535;

/** An inclusive range of ports, `[first, last]`. */
export type PortRange = readonly [first: number, last: number];

/** One entry of the `exclude` option: a single port, or an inclusive `[first, last]` range. */
export type PortExclusion = number | PortRange;

/** Whether `value` is a port number: an integer from 1 to {@link MAX_PORT}. */
export function isPort(value: unknown): value is number {
  return Number.isInteger(value) && (value as number) >= 1 && (value as number) <= MAX_PORT;
}

/** Whether `value` is a `[first, last]` range of ports with `first <= last`. */
export function isPortRange(value: unknown): value is PortRange {
  return Array.isArray(value) && value.length === 2 && isPort(value[0]) && isPort(value[1]) && value[0] <= value[1];
}

/** Whether `count` consecutive ports from `start` are all port numbers. */
export function isPortRun(start: unknown, count: unknown): boolean {
  return isPort(start) && Number.isInteger(count) && (count as number) >= 1 && start + (count as number) - 1 <= MAX_PORT;
}

/** Sorts ranges and merges those that overlap or touch. */
export function mergeRanges(ranges: readonly PortRange[]): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const merged: Array<[number, number]> = [];
  for (const [first, last] of sorted) {
    const previous = merged[merged.length - 1];
    if (previous !== undefined && first <= previous[1] + 1) previous[1] = Math.max(previous[1], last);
    else merged.push([first, last]);
  }
  return merged;
}

/** Formats ranges for messages: `6000, 6665-6669`. */
export function formatRanges(ranges: readonly PortRange[]): string {
  return ranges.map(([first, last]) => (first === last ? `${first}` : `${first}-${last}`)).join(', ');
}
