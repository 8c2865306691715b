// The direction of imports in src/, checked by `npm run lint` (docs/design.md, "The layers").
//
// Each folder is a layer and may import only the layers below it; the entry points at the top
// of src/ (index, cli, testing) may import anything, and nothing imports them. A cycle between
// files is an error too, so neither a file nor a folder can ever depend on itself.

/** The layers, lowest first. */
const LAYERS = ['base', 'options', 'ports', 'store', 'liveness', 'claims', 'queue', 'api', 'cli'];

/** @type {import('dependency-cruiser').IForbiddenRuleType[]} */
const layerRules = LAYERS.slice(0, -1).map((layer, index) => ({
  name: `${layer}-imports-upwards`,
  comment: `src/${layer}/ may import only ${['node and its dependencies', ...LAYERS.slice(0, index)].join(', ')}.`,
  severity: 'error',
  from: { path: `^src/${layer}/` },
  to: { path: `^src/(${LAYERS.slice(index + 1).join('|')})/` },
}));

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'no-circular',
      comment: 'A cycle between modules: one of them must move down a layer, or the shared part into a module of its own.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
    ...layerRules,
    {
      name: 'cli-imports-exec',
      comment: 'The commands of src/cli/ are loaded one at a time; exec is one of them, and the others must not pull it in.',
      severity: 'error',
      from: { path: '^src/cli/[^/]+$' },
      to: { path: '^src/cli/exec/' },
    },
    {
      name: 'imports-an-entry-point',
      comment: 'index.ts, cli.ts and testing.ts are entry points: only the outside world imports them.',
      severity: 'error',
      from: { path: '^src/[^/]+/' },
      to: { path: '^src/[^/]+\\.ts$' },
    },
    {
      name: 'not-to-unresolvable',
      comment: 'An import that resolves to nothing.',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
  },
};
