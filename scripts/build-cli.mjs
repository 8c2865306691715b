// The `portlease` command as one CommonJS file, dist/cli.cjs, with its dependencies in it.
//
// Why: a shell job pays the CLI's start-up on every call. Node 20 starts a CommonJS file
// without setting up its ES module loader, and one file is read and compiled once instead of
// resolving a few dozen modules; the command also starts without graceful-fs (see the shim).
// bench/cold.mjs measures the difference (figures in bench/RESULTS.md).
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { licenceFooter } from './bundled-licences.mjs';

const root = new URL('../', import.meta.url).pathname;
const outfile = join(root, 'dist', 'cli.cjs');

await build({
  entryPoints: [join(root, 'src', 'cli.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  alias: { 'graceful-fs': join(root, 'scripts', 'shims', 'graceful-fs.cjs') },
  // The CLI reads its version from package.json next to dist/, through import.meta.url.
  define: { 'import.meta.url': '__portleaseModuleUrl' },
  banner: { js: "const __portleaseModuleUrl = require('node:url').pathToFileURL(__filename).href;" },
  legalComments: 'eof',
  footer: { js: licenceFooter(['env-paths', 'is-safe-filename', 'proper-lockfile', 'retry', 'signal-exit']) },
  logLevel: 'warning',
});
chmodSync(outfile, 0o755);
