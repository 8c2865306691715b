import { describe, expect, it } from 'vitest';
import { findFreeRun, isClaimLive, removePorts } from '../../src/claims/search.js';
import type { ClaimRecord } from '../../src/store/store.js';

function claim(start: number, count: number, pid = 1, extra: Partial<ClaimRecord> = {}): ClaimRecord {
  return { id: `${start}`, start, count, host: '0.0.0.0', pid, createdAt: 0, ...extra };
}
const alive = () => true;
const nothingBusy = () => false;

describe('findFreeRun', () => {
  it('returns base when nothing is claimed', () => {
    expect(findFreeRun([], 8090, 3, nothingBusy, alive).start).toBe(8090);
  });

  it('skips past live claims, taking the first gap that fits', () => {
    const claims = [claim(8090, 2), claim(8093, 1), claim(8096, 1)];
    expect(findFreeRun(claims, 8090, 2, nothingBusy, alive).start).toBe(8094);
    expect(findFreeRun(claims, 8090, 1, nothingBusy, alive).start).toBe(8092);
  });

  it('reports dead claims it runs into and reuses their ports', () => {
    const dead = claim(8090, 3, 2);
    const result = findFreeRun([dead, claim(9000, 1)], 8090, 2, nothingBusy, (c) => c.pid !== 2);
    expect(result.start).toBe(8090);
    expect([...result.dead]).toEqual([dead]);
  });

  it('checks liveness only for claims in the way', () => {
    const checked: number[] = [];
    findFreeRun([claim(8090, 1), claim(8095, 1), claim(30000, 1)], 8090, 2, nothingBusy, (c) => {
      checked.push(c.start);
      return true;
    });
    expect(checked).toEqual([8090]);
  });

  it('skips busy ports and gives up at 65535', () => {
    expect(findFreeRun([], 65533, 2, (port) => port === 65534, alive).start).toBeUndefined();
    expect(findFreeRun([], 65532, 2, (port) => port === 65533, alive).start).toBe(65534);
  });
});

describe('removePorts', () => {
  it('splits a run when only part of it is released', () => {
    const { kept, released } = removePorts([claim(100, 5)], () => true, new Set([101, 103]));
    expect(released).toEqual([101, 103]);
    expect(kept.map((c) => [c.start, c.count])).toEqual([
      [100, 1],
      [102, 1],
      [104, 1],
    ]);
    expect(new Set(kept.map((c) => c.id))).toEqual(new Set(['100']));
  });

  it('releases whole claims when no ports are given, only where matched', () => {
    const { kept, released } = removePorts([claim(100, 2, 1), claim(200, 1, 2)], (c) => c.pid === 1, undefined);
    expect(released).toEqual([100, 101]);
    expect(kept.map((c) => c.start)).toEqual([200]);
  });
});

describe('isClaimLive', () => {
  it('keeps a TTL claim until it expires, whatever its owner', () => {
    const ttl = claim(100, 1, 1, { expiresAt: 1000 });
    expect(isClaimLive(ttl, 999, () => false)).toBe(true);
    expect(isClaimLive(ttl, 1000, () => true)).toBe(false);
  });
});

describe('removePorts keeps untouched claims as they were', () => {
  it('returns the same objects for matched claims none of whose ports are released', () => {
    const untouched = claim(300, 2);
    const { kept, released } = removePorts([claim(100, 2), untouched], () => true, new Set([101]));
    expect(released).toEqual([101]);
    expect(kept[kept.length - 1]).toBe(untouched);
  });
});
