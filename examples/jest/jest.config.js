// Plain CommonJS jest: no transform settings, no --experimental-vm-modules.
module.exports = {
  maxWorkers: 4,
  globalSetup: './global-setup.js',
  globalTeardown: './global-teardown.js',
};
