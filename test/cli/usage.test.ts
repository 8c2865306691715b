import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeStateDir, snapshotDir } from '../helpers/state-dir.js';
import { runCli } from './run-cli.js';

// Bad usage: exit 2, one line on stderr naming the problem, nothing on stdout, no state change.
describe('bad usage', () => {
  let stateDir: string;
  let cleanup: () => void;
  beforeAll(async () => {
    ({ dir: stateDir, cleanup } = makeStateDir());
    // A state file with a claim in it, so that any write would show.
    const setup = await runCli(['claim', '--ttl', '10m', '--label', 'before', '--state-dir', stateDir]);
    expect(setup.code).toBe(0);
  });
  afterAll(() => cleanup());

  const cases: Array<[string, string[], RegExp]> = [
    ['an unknown flag', ['claim', '--bogus'], /Unknown option '--bogus'/],
    ['--count 0', ['claim', '--count', '0'], /`count`.*from 1 to 65535, got 0/],
    ['--count that is not a number', ['claim', '--count', 'three'], /--count to be a whole number, got "three"/],
    ['--ttl soon', ['claim', '--ttl', 'soon'], /--ttl to be a duration such as 90s.*got "soon"/],
    ['a bare --ttl number', ['claim', '--ttl', '90'], /--ttl to be a duration/],
    ['--pid together with --ttl', ['claim', '--pid', '1', '--ttl', '1m'], /--pid and --ttl exclude each other/],
    ['a run past 65535', ['claim', '--base', '65535', '--count', '2'], /fit below port 65535/],
    ['a malformed --host', ['claim', '--host', 'not a host'], /`host` to be an IP address or host name/],
    ['an empty --state-dir', ['claim', '--state-dir', ''], /`stateDir` to be a non-empty string/],
    ['a stray argument', ['list', 'extra'], /Unexpected argument "extra"/],
    ['a port that is not a port', ['release', '70000'], /PORT to be a port number from 1 to 65535, got "70000"/],
    ['exec without --', ['exec', 'node', 'server.js'], /Missing command: put it after '--'/],
    ['exec with nothing after --', ['exec', '--count', '2', '--'], /Missing command/],
    ['exec with a bad --prefix', ['exec', '--prefix', 'A-B', '--', 'true'], /--prefix to be the start of an environment variable name/],
    ['exec with --ttl', ['exec', '--ttl', '1m', '--', 'true'], /Unknown option '--ttl'/],
    ['an unknown command', ['claims'], /Unknown command "claims"/],
    ['--protocol sctp', ['claim', '--protocol', 'sctp'], /--protocol to be tcp, udp or both, got "sctp"/],
    ['--exclude with a word in it', ['claim', '--exclude', '5432,redis'], /--exclude to be ports and ranges such as 5432,6379-6380/],
    ['--exclude with a reversed range', ['claim', '--exclude', '9-3'], /`exclude`.*first <= last, got \[9, 3\]/],
    ['exec with a bad --protocol', ['exec', '--protocol', 'x', '--', 'true'], /--protocol to be tcp, udp or both/],
  ];

  for (const [what, args, message] of cases) {
    it(`${what}: exit 2, one line, state untouched`, async () => {
      const before = snapshotDir(stateDir);
      // Right after the command: for exec, whatever follows '--' belongs to the command.
      const result = await runCli(args.includes('--state-dir') ? args : [args[0]!, '--state-dir', stateDir, ...args.slice(1)]);
      expect(result.code).toBe(2);
      expect(result.stdout).toBe('');
      expect(result.stderr).toMatch(/^portlease: PORTLEASE_USAGE: [^\n]+\n$/);
      expect(result.stderr).toMatch(message);
      expect(snapshotDir(stateDir)).toEqual(before);
    });
  }

  it('does not even create a state directory', async () => {
    const missing = join(stateDir, 'not-yet');
    const result = await runCli(['claim', '--count', '0', '--state-dir', missing]);
    expect(result.code).toBe(2);
    expect(existsSync(missing)).toBe(false);
  });
});
