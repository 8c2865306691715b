import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StateIoError } from '../../src/base/errors.js';
import { type ClaimRecord, isClaimRecord, recordKey, STATE_VERSION } from '../../src/store/format.js';
import { StateStore } from '../../src/store/store.js';
import { makeStateDir } from '../helpers/state-dir.js';

// The state reader meets whatever is in a shared directory: arbitrary bytes, arbitrary JSON.
// It must never crash (only a typed error), never hang, never produce a claim that is not
// well formed, and never lose a well-formed claim from a file whose header it can read.
let dir: string;
let cleanup: () => void;
beforeAll(() => ({ dir, cleanup } = makeStateDir()));
afterAll(() => cleanup());

const validRecord: fc.Arbitrary<ClaimRecord> = fc
  .record({
    start: fc.integer({ min: 1, max: 65000 }),
    count: fc.integer({ min: 1, max: 535 }),
    pid: fc.integer({ min: 1, max: 4_000_000 }),
    createdAt: fc.integer({ min: 0, max: 2 ** 42 }),
    label: fc.option(fc.string(), { nil: undefined }),
    startTime: fc.option(fc.stringMatching(/^\d{1,12}$/), { nil: undefined }),
  })
  .map(({ label, startTime, ...rest }) => ({
    id: '',
    host: '0.0.0.0',
    ...rest,
    ...(label === undefined ? {} : { label }),
    ...(startTime === undefined ? {} : { startTime }),
  }));

function readBoth(path: string): ClaimRecord[][] {
  const results: ClaimRecord[][] = [];
  for (const repair of [false, true]) {
    try {
      results.push(new StateStore(path).load({ repair }).claims);
    } catch (error) {
      // The only acceptable failure: a typed one (a newer format is refused, for one).
      expect(error).toBeInstanceOf(StateIoError);
    }
  }
  return results;
}

describe('the state reader on arbitrary input', () => {
  it('arbitrary bytes: no crash, no claim that is not well formed', () => {
    const path = join(dir, 'bytes.jsonl');
    const onWarning = () => undefined;
    process.on('warning', onWarning);
    try {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
          writeFileSync(path, bytes);
          for (const claims of readBoth(path)) for (const claim of claims) expect(isClaimRecord(claim)).toBe(true);
        }),
        { numRuns: 300 },
      );
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('a readable header with arbitrary junk among its records and lines keeps every well-formed record, and only those', () => {
    const path = join(dir, 'json.jsonl');
    const onWarning = () => undefined;
    process.on('warning', onWarning);
    try {
      fc.assert(
        fc.property(
          fc.array(
            fc.oneof(
              validRecord.map((record) => ({ valid: true as const, record })),
              fc.anything().map((junk) => ({ valid: false as const, junk })),
            ),
            { maxLength: 20 },
          ),
          fc.array(fc.oneof(fc.anything(), fc.string()), { maxLength: 5 }),
          (entries, junkLines) => {
            // Unique ids, so that no record replaces another.
            const records = entries.map((entry, index) => (entry.valid ? { ...entry.record, id: `r${index}` } : entry.junk));
            const expected = records.filter(isClaimRecord).map(recordKey).sort();
            const header = JSON.stringify({ version: STATE_VERSION, gen: 'fuzz', claims: records });
            const lines = junkLines.map((junk) => (typeof junk === 'string' ? junk.replace(/\n/g, ' ') : (JSON.stringify(junk) ?? 'null')));
            writeFileSync(path, `${[header, ...lines].join('\n')}\n`);
            for (const claims of readBoth(path)) {
              for (const claim of claims) expect(isClaimRecord(claim)).toBe(true);
              // Junk lines are not fenced change lines of this generation: nothing is added or dropped.
              expect(claims.map(recordKey).sort()).toEqual(expected);
            }
          },
        ),
        { numRuns: 300 },
      );
    } finally {
      process.off('warning', onWarning);
    }
  });
});
