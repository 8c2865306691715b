// The ES module build, dist/index.js: one file with its dependencies in it, in place of tsc's
// module per source file (tsc's declaration files stay, and describe it).
//
// Why: a fresh process that imports portlease pays for every module the ES module loader
// resolves, reads and links, and for graceful-fs, which proper-lockfile loads as its default
// fs and which patches Node's fs for the whole process when loaded. portlease always passes
// an fs of its own, so graceful-fs is replaced by node:fs here, as in the CLI bundle (see
// scripts/shims/). bench/cold.mjs measures import + one claim in a fresh process (figures in
// bench/RESULTS.md).
import { join } from 'node:path';
import { build } from 'esbuild';
import { licenceFooter } from './bundled-licences.mjs';

const root = new URL('../', import.meta.url).pathname;

await build({
  entryPoints: [join(root, 'src', 'index.ts')],
  outfile: join(root, 'dist', 'index.js'),
  allowOverwrite: true,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  alias: { 'graceful-fs': join(root, 'scripts', 'shims', 'graceful-fs.cjs') },
  // The CommonJS packages inside (proper-lockfile and what it loads) require Node's modules.
  banner: {
    js: "import { createRequire as __portleaseCreateRequire } from 'node:module';\nconst require = __portleaseCreateRequire(import.meta.url);",
  },
  legalComments: 'eof',
  footer: { js: licenceFooter(['env-paths', 'is-safe-filename', 'proper-lockfile', 'retry', 'signal-exit']) },
  logLevel: 'warning',
});
