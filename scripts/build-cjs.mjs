// The CommonJS build, next to the ESM one: dist/index.cjs and a .d.cts twin of every .d.ts.
//
// Why a bundle: jest's default (CommonJS) mode and older tools `require()` the package and
// cannot load ES modules, and env-paths is ESM-only, so it is bundled in. proper-lockfile is
// CommonJS and stays a dependency, required from node_modules (the ESM bundle has its own
// copy, see build-esm.mjs). Process-wide state is kept on globalThis (src/base/process-state.ts),
// so both builds loaded in one process still agree; the lock itself is the directory on disk.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { licenceFooter } from './bundled-licences.mjs';

const dist = new URL('../dist/', import.meta.url).pathname;

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
  footer: { js: licenceFooter(['env-paths', 'is-safe-filename']) },
  logLevel: 'warning',
});

// A .d.ts in a "type": "module" package describes an ES module; CommonJS consumers need
// .d.cts files, whose relative imports name .cjs files (TypeScript maps them to .d.cts).
for (const name of readdirSync(dist, { recursive: true })) {
  if (!name.endsWith('.d.ts')) continue;
  const text = readFileSync(join(dist, name), 'utf8');
  const cts = text.replace(/((?:from|import\()\s*['"]\.{1,2}\/[^'"]+)\.js(['"])/g, '$1.cjs$2');
  writeFileSync(join(dist, name.replace(/\.d\.ts$/, '.d.cts')), cts);
}
