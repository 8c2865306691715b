// Hot, in-process: one claim, and one claim+release, of 1 and of 3 consecutive ports —
// portlease next to get-port, portfinder, get-port-please and the floor (the primitives an
// allocation cannot avoid, done directly on the same filesystem as the state directory).
import { mkdirSync, readFileSync, renameSync, rmdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import getPort, { clearLockedPorts } from 'get-port';
import portfinder from 'portfinder';
import { getPort as getPortPlease } from 'get-port-please';
import { PortAllocator } from '../dist/index.js';
import { formatMicros, measure, median, quick, ratio, table, tempDir } from './lib.mjs';

const BASE = 21_000;

function probe(port) {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '0.0.0.0', exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** The floor: lock (mkdir), read the state, probe each port, write+rename the state, unlock. */
function floorClaim(dir, count) {
  const state = join(dir, 'state.json');
  writeFileSync(state, JSON.stringify({ version: 1, claims: [] }));
  return async () => {
    mkdirSync(`${state}.lock`);
    const text = readFileSync(state, 'utf8');
    writeFileSync(`${state}.tmp`, text);
    renameSync(`${state}.tmp`, state);
    rmdirSync(`${state}.lock`);
    await Promise.all(Array.from({ length: count }, (_, i) => probe(BASE + i)));
  };
}

async function rivals(count) {
  return {
    'get-port': async () => {
      for (let i = 0; i < count; i++) await getPort({ port: BASE + i });
    },
    portfinder: async () => {
      if (count === 1) await portfinder.getPortPromise({ port: BASE });
      else await portfinder.getPortsPromise(count, { port: BASE });
    },
    'get-port-please': async () => {
      for (let i = 0; i < count; i++) await getPortPlease({ port: BASE + i, portRange: [BASE, BASE + 100], host: '0.0.0.0' });
    },
  };
}

/** Resolves to rows `[name, median µs]` for one filesystem and one port count. */
export async function runHot(root, count) {
  const iterations = quick ? 5 : 400;
  const { dir, cleanup } = tempDir(root);
  const rows = [];
  try {
    const allocator = new PortAllocator({ stateDir: join(dir, 'state') });
    const bare = new PortAllocator({ stateDir: join(dir, 'state-bare'), socketTable: false });
    const floorDir = join(dir, 'floor');
    mkdirSync(floorDir);
    const floor = floorClaim(floorDir, count);
    const leases = [];
    const subjects = {
      floor,
      'portlease claim': async () => {
        leases.push(await allocator.claim({ base: BASE, count }));
      },
      'portlease claim+release': async () => {
        const lease = await allocator.claim({ base: BASE, count });
        await lease.release();
      },
      // The same without the /proc/net TIME_WAIT check (its ~35 µs counter read per claim).
      'portlease claim+release, socketTable off': async () => {
        const lease = await bare.claim({ base: BASE, count });
        await lease.release();
      },
      ...(await rivals(count)),
    };
    for (const [name, fn] of Object.entries(subjects)) {
      clearLockedPorts();
      const samples = await measure(fn, { iterations });
      rows.push([name, median(samples)]);
      // Claims made without release pile up; start each subject from an empty state.
      await allocator.release();
      await bare.release();
      leases.length = 0;
    }
  } finally {
    cleanup();
  }
  return rows;
}

/** The markdown table of the hot benchmark for `roots` (filesystem label → directory). */
export async function hotTable(roots, facts = new Map()) {
  const out = [];
  for (const [label, root] of Object.entries(roots)) {
    for (const count of [1, 3]) {
      const rows = await runHot(root, count);
      const floor = rows.find(([name]) => name === 'floor')[1];
      const getPortTime = rows.find(([name]) => name === 'get-port')[1];
      facts.set(`hot.${label}.${count}`, rows.find(([name]) => name === 'portlease claim')[1] / getPortTime);
      out.push(`**${count} port${count === 1 ? '' : 's'}, state on ${label}** (median of ${quick ? 5 : 400})\n`);
      out.push(
        table(
          ['subject', '× floor', '× get-port', 'median'],
          rows.map(([name, us]) => [name, ratio(us, floor), ratio(us, getPortTime), formatMicros(us)]),
        ),
      );
      out.push('');
    }
  }
  return out.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(await hotTable({ 'ext4 (/tmp)': '/tmp', 'tmpfs (/dev/shm)': '/dev/shm' }));
}
