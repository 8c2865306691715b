#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { isPortleaseError } from './errors.js';
import { PortAllocator } from './allocator.js';

const USAGE = `Usage: portlease claim [--count N] [--base B] [--host H] [--label L] [--pid PID] [--state-dir DIR] [--json]

Claims N consecutive free ports and prints them, space-separated. The claim belongs to
the calling process (the shell running this command) unless --pid names another.`;

function toInteger(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) throw new RangeError(`Expected --${name} to be a whole number, got ${JSON.stringify(value)}.`);
  return Number(value);
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      count: { type: 'string' },
      base: { type: 'string' },
      host: { type: 'string' },
      label: { type: 'string' },
      pid: { type: 'string' },
      'state-dir': { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (positionals[0] !== 'claim' || positionals.length > 1) throw new TypeError(`Unknown command. ${USAGE}`);
  const allocator = new PortAllocator({ stateDir: values['state-dir'] });
  const lease = await allocator.claim({
    count: toInteger('count', values.count),
    base: toInteger('base', values.base),
    host: values.host,
    label: values.label,
    // The CLI exits at once; the claim must outlive it, so it belongs to whoever called us.
    pid: toInteger('pid', values.pid) ?? process.ppid,
  });
  process.stdout.write(values.json === true ? `${JSON.stringify({ ports: lease.ports, pid: lease.pid })}\n` : `${lease.ports.join(' ')}\n`);
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const code = isPortleaseError(error) ? `${error.code}: ` : '';
    process.stderr.write(`portlease: ${code}${(error as Error).message}\n`);
    process.exitCode = isPortleaseError(error) ? 1 : 2;
  },
);
