import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeStateDir } from '../helpers/state-dir.js';
import { installPacked, type PackedInstall, repoDir, repoModules, run } from './packed.js';

// The package as a user gets it: `npm pack` of the build, installed into an empty project,
// then loaded by every kind of consumer the README promises.
const bin = (name: string): string => join(repoModules, '.bin', name);

// A claim that a real server then listens on: the same check in every consumer below.
const claimAndListen = (claimPorts: string) => `
  const lease = await ${claimPorts}({ count: 2, host: '127.0.0.1' });
  const server = net.createServer().listen(lease.ports[1], '127.0.0.1');
  await new Promise((resolve, reject) => server.once('listening', resolve).once('error', reject));
  server.close();
  await lease.release();
  console.log('ports ' + lease.ports.join(' '));`;

// A typed use of the public surface: a lease, and a guard that narrows to its class.
const typedUse = `import { claimPorts, isPortleaseError, type Lease } from 'portlease';
export async function use(): Promise<number> {
  try {
    await using scoped = await claimPorts({ count: 1 });
    const lease: Lease = await claimPorts({ count: 2, label: 'typed' });
    await lease.release();
    return lease.port + scoped.port;
  } catch (error) {
    if (isPortleaseError(error, 'PORTLEASE_EXHAUSTED')) return error.base;
    throw error;
  }
}
`;

// Each test starts real runners and compilers: minutes, not seconds, on a loaded 2-core CI machine.
describe('the packed package', { timeout: 240_000 }, () => {
  let packed: PackedInstall;
  const state = makeStateDir();
  const env = { ...process.env, PORTLEASE_STATE_DIR: state.dir };

  beforeAll(async () => {
    packed = await installPacked();
  }, 180_000);
  afterAll(() => {
    packed?.cleanup();
    state.cleanup();
  });

  it('passes publint and are-the-types-wrong', async () => {
    const publint = await run(bin('publint'), ['run', packed.tarball, '--strict']);
    expect(publint.stdout).toContain('All good!');
    const attw = await run(bin('attw'), [packed.tarball, '--format', 'table-flipped', '--no-color']);
    expect(attw.stdout).toContain('No problems found');
  });

  it('ships the built code, its types and the licence, and no source maps or test entry', async () => {
    const { stdout } = await run('tar', ['-tzf', packed.tarball]);
    const files = stdout.trim().split('\n');
    for (const file of ['LICENSE', 'README.md', 'dist/index.js', 'dist/index.cjs', 'dist/index.d.ts', 'dist/index.d.cts', 'dist/cli.cjs']) {
      expect(files).toContain(`package/${file}`);
    }
    expect(files.filter((file) => file.endsWith('.map') || file.includes('dist/testing.'))).toEqual([]);
  });

  it('loads with require() and with import, and claims ports a server can listen on', async () => {
    const cjs = `const net = require('node:net'); const { claimPorts } = require('portlease');
      (async () => { ${claimAndListen('claimPorts')} })();`;
    const esm = `import net from 'node:net'; import { claimPorts } from 'portlease'; ${claimAndListen('claimPorts')}`;
    const required = await run(process.execPath, ['-e', cjs], { cwd: packed.project, env });
    const imported = await run(process.execPath, ['--input-type=module', '-e', esm], { cwd: packed.project, env });
    expect(required.stdout).toMatch(/^ports \d+ \d+\n$/);
    expect(imported.stdout).toMatch(/^ports \d+ \d+\n$/);
  });

  it("runs the README's quick start as a plain .mjs file", async () => {
    const readme = readFileSync(join(repoDir, 'README.md'), 'utf8');
    const quickStart = /## Quick start\n\n```js\n([\s\S]*?)```/.exec(readme)![1]!;
    // The example leaves its server running; the test closes it so the process ends.
    writeFileSync(
      join(packed.project, 'server.mjs'),
      `${quickStart}\nserver.close(); await lease.release(); console.log(lease.ports.join(' '));\n`,
    );
    const result = await run(process.execPath, ['server.mjs'], { cwd: packed.project, env });
    expect(result.stdout).toMatch(/^\d+ \d+\n$/);
  });

  it('works in jest with no configuration (CommonJS mode)', async () => {
    packed.link('jest');
    writeFileSync(
      join(packed.project, 'claim.test.js'),
      `const net = require('node:net');
       const { claimPorts, isPortleaseError } = require('portlease');
       test('claims and listens', async () => { ${claimAndListen('claimPorts')} expect(isPortleaseError(new Error())).toBe(false); });`,
    );
    const result = await run(process.execPath, [join(packed.project, 'node_modules/jest/bin/jest.js'), '--ci'], {
      cwd: packed.project,
      env,
    });
    expect(result.stderr).toMatch(/Tests:\s+1 passed, 1 total/);
  });

  it('works in jest with ts-jest, with no transformIgnorePatterns', async () => {
    for (const name of ['jest', 'ts-jest', '@jest/globals', '@types/node']) packed.link(name);
    const dir = join(packed.project, 'tsj');
    mkdirSync(dir);
    writeFileSync(join(dir, 'jest.config.js'), `module.exports = { preset: 'ts-jest', testEnvironment: 'node' };`);
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { module: 'commonjs', target: 'es2020', strict: true, types: ['node'] } }),
    );
    // ts-jest type-checks the file against the package's .d.cts types before running it.
    writeFileSync(
      join(dir, 'claim.test.ts'),
      `import net from 'node:net';
       import { expect, test } from '@jest/globals';
       import { claimPorts, type Lease } from 'portlease';
       test('claims and listens', async () => { ${claimAndListen('claimPorts')} const typed: Lease | undefined = undefined; expect(typed).toBeUndefined(); });`,
    );
    const jest = join(packed.project, 'node_modules/jest/bin/jest.js');
    const result = await run(process.execPath, [jest, '--ci', '--rootDir', dir], { cwd: dir, env });
    expect(result.stderr).toMatch(/Tests:\s+1 passed, 1 total/);
  });

  it('works in mocha, as CommonJS and as an ES module', async () => {
    packed.link('mocha');
    mkdirSync(join(packed.project, 'mo'));
    writeFileSync(
      join(packed.project, 'mo', 'claim.test.cjs'),
      `const net = require('node:net'); const { claimPorts } = require('portlease');
       it('claims and listens (require)', async () => { ${claimAndListen('claimPorts')} });`,
    );
    writeFileSync(
      join(packed.project, 'mo', 'claim.test.mjs'),
      `import net from 'node:net'; import { claimPorts } from 'portlease';
       it('claims and listens (import)', async () => { ${claimAndListen('claimPorts')} });`,
    );
    const mocha = join(packed.project, 'node_modules/mocha/bin/mocha.js');
    const result = await run(process.execPath, [mocha, 'mo/*.test.*'], { cwd: packed.project, env });
    expect(result.stdout).toMatch(/2 passing/);
  });

  it('works in vitest with no configuration, in forks and in threads', async () => {
    packed.link('vitest');
    mkdirSync(join(packed.project, 'vt'));
    writeFileSync(
      join(packed.project, 'vt', 'claim.test.mjs'),
      `import net from 'node:net'; import { test } from 'vitest'; import { claimPorts } from 'portlease';
       test('claims and listens', async () => { ${claimAndListen('claimPorts')} });`,
    );
    // Both pools: child processes (the default) and worker threads.
    for (const pool of ['forks', 'threads']) {
      const vitest = join(packed.project, 'node_modules/vitest/vitest.mjs');
      const result = await run(process.execPath, [vitest, 'run', 'vt', '--pool', pool], { cwd: packed.project, env });
      expect(result.stdout).toMatch(/Tests\s+1 passed/);
    }
  });

  // Every `module` setting a TypeScript user may have, with `target` es2020 and no
  // skipLibCheck; node16 and nodenext check a CommonJS and an ES module file each. One
  // `tsc --build` checks them all: a process per setting would cost seconds each.
  it('type-checks for module commonjs, node16, nodenext and bundler, target es2020, no skipLibCheck', async () => {
    packed.link('@types/node');
    const settings = [
      ['commonjs', 'node10', ['cts']],
      ['node16', 'node16', ['cts', 'mts']],
      ['nodenext', 'nodenext', ['cts', 'mts']],
      ['esnext', 'bundler', ['ts']],
    ] as const;
    const dirs = settings.map(([module, moduleResolution, extensions]) => {
      const dir = join(packed.project, `ts-${module}`);
      mkdirSync(dir);
      const compilerOptions = {
        module,
        moduleResolution,
        target: 'es2020',
        strict: true,
        noEmit: true,
        types: ['node'],
        skipLibCheck: false,
        // TypeScript 6 deprecates node10 resolution; users of TypeScript 5 still have it.
        ...(moduleResolution === 'node10' ? { ignoreDeprecations: '6.0' } : {}),
      };
      writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, include: ['*'] }));
      for (const extension of extensions) writeFileSync(join(dir, `use.${extension}`), typedUse);
      return dir;
    });
    await run(process.execPath, [join(repoModules, 'typescript/bin/tsc'), '--build', ...dirs], { cwd: packed.project });
  });
});
