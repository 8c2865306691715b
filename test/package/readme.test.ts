import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..', '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : [],
  );
}
const code = sources(join(root, 'src')).map((file) => readFileSync(file, 'utf8'));

/** The codes of the README's error table: the first cell of each row of the `## Errors` section. */
function errorTable(): string[] {
  const section = readme.slice(readme.indexOf('## Errors'), readme.indexOf('\n## ', readme.indexOf('## Errors') + 1));
  return [...section.matchAll(/^\| `(PORTLEASE_[A-Z_]+)` \|/gm)].map((match) => match[1]!);
}

describe('the README', () => {
  it('lists in its error table every error code the code can raise', () => {
    const union = readFileSync(join(root, 'src', 'base', 'errors.ts'), 'utf8');
    const libraryCodes = [
      ...union
        .slice(union.indexOf('export type PortleaseErrorCode'), union.indexOf(';', union.indexOf('export type PortleaseErrorCode')))
        .matchAll(/'(PORTLEASE_[A-Z_]+)'/g),
    ].map((match) => match[1]!);
    // Error classes outside errors.ts (the CLI's usage error) declare `code = '...'`.
    const otherCodes = code.flatMap((text) => [...text.matchAll(/readonly code = '(PORTLEASE_[A-Z_]+)'/g)].map((match) => match[1]!));
    expect(libraryCodes.length).toBeGreaterThan(5);
    expect(otherCodes).toContain('PORTLEASE_USAGE');
    expect(errorTable().sort()).toEqual([...new Set([...libraryCodes, ...otherCodes])].sort());
  });

  it('names every PORTLEASE_ string of the code: error codes, warning codes, environment variables', () => {
    const names = new Set(code.flatMap((text) => [...text.matchAll(/'(PORTLEASE_[A-Z_]*[A-Z])_?'/g)].map((match) => match[1]!)));
    const missing = [...names].filter((name) => !readme.includes(name));
    expect(missing).toEqual([]);
  });
});
