// The job's tests: every service answers on its port (each is given a few seconds to start).
const expected = ['api', 'db', 'metrics'];
const ports = process.argv.slice(2).map(Number);

for (const [i, port] of ports.entries()) {
  let answer;
  for (let attempt = 0; attempt < 100 && answer === undefined; attempt++) {
    answer = await fetch(`http://127.0.0.1:${port}/`).then(
      (response) => response.text(),
      () => new Promise((resolve) => setTimeout(resolve, 50)),
    );
  }
  if (answer !== expected[i]) {
    console.error(`port ${port}: expected ${expected[i]}, got ${answer}`);
    process.exit(1);
  }
}
