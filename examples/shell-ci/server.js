// A stand-in service: answers with its name. Ends by itself after 60 s if nobody stops it.
import { createServer } from 'node:http';

const [name, port] = process.argv.slice(2);
createServer((request, response) => response.end(name)).listen(Number(port), '127.0.0.1');
setTimeout(() => process.exit(0), 60_000).unref();
