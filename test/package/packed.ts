import { spawn, type SpawnOptions } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Finished } from '../cli/run-cli.js';
import { exited } from '../helpers/processes.js';

export const repoDir = fileURLToPath(new URL('../../', import.meta.url));
/** The repository's own node_modules, where the test runners the recipes use are installed. */
export const repoModules = join(repoDir, 'node_modules');

/**
 * Runs a command to its end and resolves to its output, without colours. The command gets a
 * process group of its own, and the whole group is SIGKILLed after `timeoutMs`: a test
 * runner's workers and servers must not outlive a runner that hung.
 */
export async function runToEnd(
  command: string,
  args: readonly string[],
  options: SpawnOptions & { timeoutMs?: number } = {},
): Promise<Finished> {
  const { timeoutMs = 180_000, ...spawnOptions } = options;
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...spawnOptions });
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }, timeoutMs);
  try {
    const raw = await exited(child, timeoutMs + 5_000);
    // Runners colour their output whatever the terminal; assertions read the text.
    // eslint-disable-next-line no-control-regex -- the escape character is what is matched
    const plain = (text: string): string => text.replace(/\x1b\[[0-9;]*m/g, '');
    return { ...raw, stdout: plain(raw.stdout), stderr: plain(raw.stderr) };
  } finally {
    clearTimeout(timer);
  }
}

/** {@link runToEnd}, failing with the command's output unless it exits 0. */
export async function run(
  command: string,
  args: readonly string[],
  options: SpawnOptions & { timeoutMs?: number } = {},
): Promise<Finished> {
  const result = await runToEnd(command, args, options);
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} exited with ${result.code ?? result.signal}\n${result.stdout}\n${result.stderr}`);
  }
  return result;
}

/** A fresh project that installed the packed package, as a user's would. */
export interface PackedInstall {
  /** The temporary directory holding the tarball and the project. */
  root: string;
  /** The tarball `npm pack` made of the current build. */
  tarball: string;
  /** The project directory; `node_modules/portlease` comes from the tarball. */
  project: string;
  /** Links a package of the repository's node_modules (a test runner) into the project. */
  link(name: string): void;
  cleanup(): void;
}

/**
 * Packs the current build (`dist/`, already built by `npm test`'s pretest: `--ignore-scripts`
 * keeps prepack from rebuilding it under the other test files) and installs the tarball into
 * an empty project. Runners are linked from the repository rather than installed again: the
 * package under test is the tarball, the runners are only tools.
 */
/** A clean environment for a runner started inside vitest, with its own state directory. */
export function runnerEnv(stateDir: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  // A nested runner must not take our worker's identity (VITEST_POOL_ID, ...) or a claim
  // this process handed down.
  const inherited = Object.entries(process.env).filter(([key]) => !/^(VITEST|TINYPOOL|PORTLEASE_ONCE_|JEST_)/.test(key));
  return { ...Object.fromEntries(inherited), PORTLEASE_STATE_DIR: stateDir, CI: 'true', ...extra };
}

/**
 * Copies the recipe `examples/<name>` next to the installed package and gives it a
 * node_modules as `npm install` would: portlease from the tarball, its runners from the
 * repository, and their commands in node_modules/.bin, so `npm test` runs as in the recipe.
 */
export function prepareRecipe(packed: PackedInstall, name: string, runners: readonly string[]): string {
  const dir = join(packed.root, name);
  cpSync(join(repoDir, 'examples', name), dir, { recursive: true });
  const modules = join(dir, 'node_modules');
  mkdirSync(join(modules, '.bin'), { recursive: true });
  const packages: Array<[string, string]> = [
    ['portlease', join(packed.project, 'node_modules', 'portlease')],
    ...runners.map((runner): [string, string] => [runner, join(repoModules, runner)]),
  ];
  for (const [packageName, target] of packages) {
    mkdirSync(join(modules, packageName, '..'), { recursive: true });
    symlinkSync(target, join(modules, packageName), 'dir');
    const { bin = {} } = JSON.parse(readFileSync(join(target, 'package.json'), 'utf8')) as { bin?: Record<string, string> };
    for (const [command, file] of Object.entries(bin)) symlinkSync(join(target, file), join(modules, '.bin', command));
  }
  return dir;
}

export async function installPacked(): Promise<PackedInstall> {
  const root = mkdtempSync(join(tmpdir(), 'portlease-pack-'));
  await run('npm', ['pack', '--ignore-scripts', '--pack-destination', root], { cwd: repoDir });
  const tarball = join(
    root,
    readdirSync(root).find((name) => name.endsWith('.tgz'))!,
  );
  const project = join(root, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  // --prefer-offline: the repository's own install already put portlease's dependencies in
  // npm's cache; the registry is asked only for what is missing there.
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--no-package-lock', tarball], { cwd: project });
  return {
    root,
    tarball,
    project,
    link(name) {
      const target = join(project, 'node_modules', name);
      if (existsSync(target)) return;
      mkdirSync(join(target, '..'), { recursive: true });
      symlinkSync(join(repoModules, name), target, 'dir');
    },
    cleanup: () => rmSync(root, { recursive: true, force: true }),
  };
}
