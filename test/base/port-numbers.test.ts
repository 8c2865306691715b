import { describe, expect, it } from 'vitest';
import { formatRanges, isPort, isPortRange, isPortRun, MAX_PORT, mergeRanges } from '../../src/base/port-numbers.js';

describe('port numbers', () => {
  it('knows a port: an integer from 1 to 65535', () => {
    for (const port of [1, 80, MAX_PORT]) expect(isPort(port)).toBe(true);
    for (const value of [0, -1, 65536, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '80', null, undefined, 2 ** 53]) {
      expect(isPort(value)).toBe(false);
    }
  });

  it('knows a range [first, last] with first <= last, and nothing else', () => {
    expect(isPortRange([1, 1])).toBe(true);
    expect(isPortRange([8000, 8100])).toBe(true);
    for (const value of [[2, 1], [0, 5], [1, 65536], [1], [1, 2, 3], '1-2', { 0: 1, 1: 2, length: 2 }, [1, Number.NaN]]) {
      expect(isPortRange(value)).toBe(false);
    }
  });

  it('knows a run of consecutive ports that ends at or below 65535', () => {
    expect(isPortRun(1, 1)).toBe(true);
    expect(isPortRun(65535, 1)).toBe(true);
    expect(isPortRun(65534, 2)).toBe(true);
    expect(isPortRun(65535, 2)).toBe(false);
    expect(isPortRun(8090, 0)).toBe(false);
    expect(isPortRun(8090, 1.5)).toBe(false);
    expect(isPortRun(0, 1)).toBe(false);
    expect(isPortRun('8090', 1)).toBe(false);
  });

  it('merges overlapping and touching ranges', () => {
    expect(
      mergeRanges([
        [10, 12],
        [1, 1],
        [13, 15],
        [11, 11],
        [20, 30],
      ]),
    ).toEqual([
      [1, 1],
      [10, 15],
      [20, 30],
    ]);
  });

  it('formats ranges for messages', () => {
    expect(
      formatRanges([
        [6000, 6000],
        [6665, 6669],
      ]),
    ).toBe('6000, 6665-6669');
    expect(formatRanges([])).toBe('');
  });
});
