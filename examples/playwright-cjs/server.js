// The app under test, started by Playwright's webServer; PORT comes from `portlease exec`.
const { createServer } = require('node:http');

const port = Number(process.env.PORT);
createServer((request, response) => {
  response.setHeader('content-type', 'application/json');
  response.end(JSON.stringify({ path: request.url, port }));
}).listen(port, '127.0.0.1');
