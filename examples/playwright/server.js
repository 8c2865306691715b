// The app under test, started by Playwright's webServer on the port it was given.
import { createServer } from 'node:http';

const port = Number(process.env.PORT);
createServer((request, response) => {
  response.setHeader('content-type', 'application/json');
  response.end(JSON.stringify({ path: request.url, port, pid: process.pid }));
}).listen(port, '127.0.0.1');
