// The CommonJS build, next to tsc's ESM one: dist/index.cjs and a .d.cts twin of every .d.ts.
//
// Why a bundle: jest's default (CommonJS) mode and older tools `require()` the package and
// cannot load ES modules, and env-paths is ESM-only, so it is bundled in. proper-lockfile is
// CommonJS and stays a dependency, shared with the ESM build. Process-wide state is kept on
// globalThis (src/process-state.ts), so both builds loaded in one process still agree.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';

const dist = new URL('../dist/', import.meta.url).pathname;

// The MIT licences of the bundled packages travel with their code, as MIT asks.
const bundled = ['env-paths', 'is-safe-filename'];
const licences = bundled
  .map((name) => {
    const dir = new URL(`../node_modules/${name}/`, import.meta.url).pathname;
    const file = readdirSync(dir).find((entry) => /^licen[cs]e/i.test(entry));
    return `${name}:\n${readFileSync(join(dir, file), 'utf8').trim()}`;
  })
  .join('\n\n');

await build({
  entryPoints: [new URL('../src/index.ts', import.meta.url).pathname],
  outfile: join(dist, 'index.cjs'),
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  external: ['proper-lockfile'],
  // import() of node:dgram or node:dns becomes require(): jest's CommonJS runtime has no
  // dynamic import without --experimental-vm-modules.
  supported: { 'dynamic-import': false },
  legalComments: 'eof',
  footer: { js: `/*\nBundled into this file:\n\n${licences.replaceAll('*/', '* /')}\n*/` },
  logLevel: 'warning',
});

// A .d.ts in a "type": "module" package describes an ES module; CommonJS consumers need
// .d.cts files, whose relative imports name .cjs files (TypeScript maps them to .d.cts).
for (const name of readdirSync(dist)) {
  if (!name.endsWith('.d.ts')) continue;
  const text = readFileSync(join(dist, name), 'utf8');
  const cts = text.replace(/((?:from|import\()\s*['"]\.{1,2}\/[^'"]+)\.js(['"])/g, '$1.cjs$2');
  writeFileSync(join(dist, name.replace(/\.d\.ts$/, '.d.cts')), cts);
}
