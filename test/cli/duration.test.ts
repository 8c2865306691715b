import { describe, expect, it } from 'vitest';
import { formatDuration, parseDuration } from '../../src/cli/duration.js';

describe('parseDuration', () => {
  it('reads one or more amounts with units', () => {
    expect(parseDuration('500ms')).toBe(500);
    expect(parseDuration('90s')).toBe(90_000);
    expect(parseDuration('30m')).toBe(1_800_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(parseDuration('1d')).toBe(86_400_000);
    expect(parseDuration('1h30m')).toBe(5_400_000);
  });

  it('refuses text, bare numbers, signs, spaces and zero, naming the option', () => {
    for (const bad of ['soon', '90', '-5s', '1.5h', '5 s', '', 'h', '0s', '1w']) {
      expect(() => parseDuration(bad, '--ttl')).toThrow(RangeError);
    }
    expect(() => parseDuration('soon', '--ttl')).toThrow(
      'Expected --ttl to be a duration such as 90s, 30m, 2h or 1h30m (units ms, s, m, h, d), got "soon".',
    );
    expect(() => parseDuration('99999999999999999d')).toThrow(/at least 1ms and finite/);
  });
});

describe('formatDuration', () => {
  it('shows the two coarsest units', () => {
    expect([0, 45_000, 60_000, 192_000, 7_500_000, 97_200_000].map(formatDuration)).toEqual(['0s', '45s', '1m', '3m12s', '2h5m', '1d3h']);
  });
});
