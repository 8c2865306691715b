const { expect, test } = require('@playwright/test');

for (const path of ['/', '/users', '/orders']) {
  test(`GET ${path} reaches the webServer on the port portlease exec claimed`, async ({ request, baseURL }) => {
    const body = await (await request.get(path)).json();
    expect(body.path).toBe(path);
    expect(`http://127.0.0.1:${body.port}`).toBe(baseURL);
    console.log(`worker ${test.info().parallelIndex} (pid ${process.pid}) uses port ${body.port}`);
  });
}
