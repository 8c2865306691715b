import { COMMON_OPTIONS, noPositionals, parseCommandLine } from './args.js';
import { HELP } from './help.js';
import { openAllocator } from './open-allocator.js';

/** `portlease reap`: drops dead and expired claims now and says how many. */
export async function runReap(args: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine('reap', args, { json: { type: 'boolean' }, ...COMMON_OPTIONS });
  if (values.help === true) {
    process.stdout.write(`${HELP.reap}\n`);
    return 0;
  }
  noPositionals('reap', positionals);
  const reaped = await openAllocator('reap', values['state-dir']).reap();
  process.stdout.write(values.json === true ? `${JSON.stringify({ reaped })}\n` : `Reaped ${reaped} claim${reaped === 1 ? '' : 's'}.\n`);
  return 0;
}
