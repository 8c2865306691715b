import { afterEach, describe, expect, it } from 'vitest';
import { claimsReleasedAtExit, newClaimId, resetProcessState } from '../../src/base/process-state.js';

describe('process-wide state', () => {
  afterEach(() => resetProcessState());

  it('makes claim ids unique per thread (a random token, then a counter)', () => {
    const first = newClaimId();
    const second = newClaimId();
    expect(second).not.toBe(first);
    expect(second.slice(0, second.lastIndexOf('-'))).toBe(first.slice(0, first.lastIndexOf('-')));
    resetProcessState();
    // A reset starts a new token: ids of the new state never repeat the old ones.
    expect(newClaimId().slice(0, first.lastIndexOf('-'))).not.toBe(first.slice(0, first.lastIndexOf('-')));
  });

  it('installs one exit hook for every state file, and a reset removes it', () => {
    const before = process.listenerCount('exit');
    const released: string[][] = [];
    const ids = claimsReleasedAtExit('/tmp/a.jsonl', (left) => released.push([...left]));
    claimsReleasedAtExit('/tmp/b.jsonl', () => undefined);
    expect(claimsReleasedAtExit('/tmp/a.jsonl', () => undefined)).toBe(ids);
    expect(process.listenerCount('exit')).toBe(before + 1);
    ids.add('x');
    process.listeners('exit').at(-1)!.call(process, 0);
    expect(released).toEqual([['x']]);
    resetProcessState();
    expect(process.listenerCount('exit')).toBe(before);
  });
});
