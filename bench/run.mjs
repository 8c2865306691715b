// Runs every benchmark and prints the tables of bench/RESULTS.md (markdown) to stdout.
// `node bench/run.mjs --quick` runs tiny iteration counts: the smoke run in `npm test`.
import { cpus, totalmem } from 'node:os';
import { coldTable } from './cold.mjs';
import { contentionTable } from './contention.mjs';
import { growthTable } from './growth.mjs';
import { firstClaimProfileTable } from './first-claim-profile.mjs';
import { goalsTable } from './goals.mjs';
import { hotTable } from './hot.mjs';
import { quick } from './lib.mjs';

const roots = { 'ext4 (/tmp)': '/tmp' };
if (process.platform === 'linux') roots['tmpfs (/dev/shm)'] = '/dev/shm';

console.log(
  `Machine: ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB; Node ${process.version}; ${new Date().toISOString().slice(0, 10)}${quick ? ' (quick run)' : ''}\n`,
);
const facts = new Map();
console.log('## 1. Hot, in-process\n');
console.log(await hotTable(roots, facts));
console.log('## 2. Contention\n');
console.log(await contentionTable(facts));
console.log('\n## 3. Growth\n');
console.log(await growthTable(roots, facts));
console.log('\n## 4. Cold\n');
console.log(await coldTable(facts));
console.log('\n## 5. Goals (issue 12)\n');
console.log(goalsTable(facts));
console.log("\n## 6. Where a first claim's CPU goes\n");
console.log(firstClaimProfileTable());
