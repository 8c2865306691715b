import { type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect } from 'vitest';
import { hasPython } from '../../helpers/python.js';
import { freeRunBase } from '../../helpers/sockets.js';
import { snapshotDir, stateTest } from '../../helpers/state-dir.js';
import { listClaims, startCli, waitFor } from '../run-cli.js';
import { exited } from '../../helpers/processes.js';

const it = stateTest;

const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

function exec(stateDir: string, args: string[], command: string[]): ChildProcess {
  const child = startCli(['exec', '--state-dir', stateDir, ...args, '--', ...command]);
  children.push(child);
  return child;
}

/** The arguments a command got, as JSON on its stdout. */
const PRINT_ARGS = [process.execPath, '-e', 'console.log(JSON.stringify(process.argv.slice(1)))'];

/** The HTTP status of GET / on 127.0.0.1:port, or undefined when nothing answers. */
function httpStatus(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const request = httpGet({ host: '127.0.0.1', port, path: '/', timeout: 1000 }, (response) => {
      response.resume();
      resolve(response.statusCode);
    });
    request.on('error', () => resolve(undefined));
    request.on('timeout', () => request.destroy());
  });
}

describe('portlease exec placeholders', () => {
  it.skipIf(!hasPython())('runs python3 -m http.server {PORT}, which serves on the claimed port', async ({ stateDir }) => {
    const base = await freeRunBase(2);
    const root = mkdtempSync(join(tmpdir(), 'portlease-serve-'));
    try {
      const child = exec(
        stateDir,
        ['--count', '2', '--base', String(base), '--host', '127.0.0.1'],
        ['python3', '-m', 'http.server', '--bind', '127.0.0.1', '--directory', root, '{PORT}'],
      );
      const done = exited(child);
      let port = 0;
      await waitFor(async () => {
        const claims = await listClaims(stateDir);
        port = claims[0]?.ports[0] ?? 0;
        return port !== 0 && (await httpStatus(port)) === 200;
      }, 'python3 http.server to answer on the claimed port');
      expect(port).toBe(base);
      child.kill('SIGTERM');
      await done;
      expect(await listClaims(stateDir)).toEqual([]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('fills in {PORT}, {PORTS}, {PORT_n} and --names, keeps escapes, shell syntax and other braces', async ({ stateDir }) => {
    const base = await freeRunBase(3);
    const result = await exited(
      exec(
        stateDir,
        ['--base', String(base), '--names', 'api,db,metrics', '--prefix', 'X_'],
        [
          ...PRINT_ARGS,
          '{X_PORT}',
          '--ports={X_PORTS}',
          'db={X_DB_PORT},m={X_METRICS_PORT},1={X_PORT_1}',
          '{{X_PORT}}',
          '${X_PORT}',
          '{}',
          '{"a":{"b":1}}',
          '{HOME}',
          'a\\b\nc\\',
          '',
        ],
      ),
    );
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(result.stdout)).toEqual([
      String(base),
      `--ports=${base} ${base + 1} ${base + 2}`,
      `db=${base + 1},m=${base + 2},1=${base + 1}`,
      '{X_PORT}',
      '${X_PORT}',
      '{}',
      '{"a":{"b":1}}',
      '{HOME}',
      'a\\b\nc\\',
      '',
    ]);
  });

  it('sets the named variables in the environment too', async ({ stateDir }) => {
    const result = await exited(
      exec(
        stateDir,
        ['--names', 'web,db'],
        [process.execPath, '-e', 'console.log(process.env.WEB_PORT, process.env.DB_PORT, process.env.PORT)'],
      ),
    );
    expect(result.stdout).toMatch(/^(\d+) (\d+) \1\n$/);
  });

  it.for<[string[], string[], RegExp]>([
    [['--count', '2'], ['echo', '{PORT_2}'], /Unknown placeholder \{PORT_2\}/],
    [['--prefix', 'DB_'], ['echo', '{PORT}'], /Unknown placeholder \{PORT\}.*provides \{DB_PORT\}/],
    [['--names', 'api'], ['echo', '{WEB_PORT}'], /Unknown placeholder \{WEB_PORT\}/],
    [['--names', 'api'], ['echo', '{port}'], /Write \{\{port\}\} for the literal text/],
    [['--names', 'api,1db'], ['echo'], /--names .*"1db"/],
    [['--names', 'api,API'], ['echo'], /--names has "API" twice/],
    [['--names', 'api,,db'], ['echo'], /--names .*""/],
    [['--names', 'api,db', '--count', '3'], ['echo'], /--count 3 does not match the 2 names/],
  ])('refuses %j -- %j with a usage error, running and changing nothing', async ([args, command, message], { stateDir }) => {
    const before = snapshotDir(stateDir);
    const result = await exited(exec(stateDir, args, command));
    expect(result).toMatchObject({ code: 2, stdout: '' });
    expect(result.stderr).toMatch(/^portlease: PORTLEASE_USAGE: /);
    expect(result.stderr).toMatch(message);
    expect(snapshotDir(stateDir)).toEqual(before);
  });
});
