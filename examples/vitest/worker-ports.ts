import { claimOnce } from 'portlease';

// A setup file runs before every test file, in the worker running it. A worker process keeps
// its environment from one file to the next, so claimOnce claims a block for the first file
// of each worker and gives the next files of that worker the same block. vitest stops its
// workers with a signal, so a block is not given back at exit but reaped by the next claim
// once the worker is gone.
const block = await claimOnce('vitest_worker', { count: 3, host: '127.0.0.1', label: `vitest worker ${process.pid}` });
process.env.WORKER_PORTS = block.ports.join(' ');
